"""`python -m spacy_cmllm annotate`: user errors end with a message and exit 2, before any model loads.
(Full runs through the command line: tests/annotate/test_job.py and test_ray.py.)"""

import re

import pytest

from spacy_cmllm.__main__ import main


@pytest.mark.parametrize(
    "name,content,extra,message",
    [
        ("in.csv", "text\nhello\n", [], "E050.*jsonl or .parquet"),
        ("missing.jsonl", None, [], "E050.*no such file"),
        ("in.jsonl", '{"text": "hi"}\n', ["--shard-size", "0"], "E040.*shard_size"),
    ],
)
def test_user_errors_exit_2(tmp_path, capsys, name, content, extra, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    code = main(["annotate", str(tmp_path / name), str(tmp_path / "out"), "--model", "no_such_pipeline", *extra])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
