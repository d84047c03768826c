import json

import pytest

from tests.tiny import build_pipeline, save_tiny_decoder, train

TEXTS = [
    "John lives in New York and works for Google .",
    "Mary visited Paris with Acme Corp yesterday .",
    "",
    "  spaces   everywhere  ",
    "Ünïcödé, emoji 🙂 and 中文 text.",
    "A much longer line " * 20,
]


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory, byte_level_tokenizer):
    """A small trained pipeline (tiny decoder + tagger + ner) saved to disk, as users ship one."""
    root = tmp_path_factory.mktemp("annotate")
    nlp = build_pipeline(save_tiny_decoder(root / "decoder", byte_level_tokenizer, n_layers=2), unmask="01")
    train(nlp, steps=8)
    nlp.to_disk(root / "pipeline")
    return root / "pipeline"


def make_rows(n, *, bad=()):
    """n JSONL lines (bytes) with ids; indices in `bad` get a damaged line instead."""
    lines = []
    damaged = [
        b"\xff\xfe not utf-8\n",
        b"{not json\n",
        b"[1, 2]\n",
        b'{"id": 9}\n',
        b'{"id": 9, "text": null}\n',
        b'{"id": 9, "text": 42}\n',
        b'{"text": "\\ud800"}\n',
        b"\n",
    ]
    for i in range(n):
        if i in bad:
            lines.append(damaged[bad.index(i) % len(damaged)])
        else:
            record = {"id": f"doc-{i}", "source": i % 3, "text": TEXTS[i % len(TEXTS)] + f" Number {i} ."}
            lines.append((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    return b"".join(lines)


def read_output(directory):
    """(annotated rows, rejects), each a list of dicts, across all shards."""
    rows, rejects = [], []
    for path in sorted(directory.glob("part-*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for path in sorted((directory / "_rejects").glob("*.jsonl")):
        rejects += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows, rejects
