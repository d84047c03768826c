import json

import pytest

from spacy_cmllm.__main__ import main
from spacy_cmllm.cli.probe_command import layer_groups, parse_cli_spec, report
from tests.tiny import save_tiny_decoder


def test_parse_cli_spec():
    assert parse_cli_spec("0011") == "0011"
    assert parse_cli_spec("3,4") == [3, 4]
    assert parse_cli_spec("[5]") == [5]


def test_layer_groups():
    assert layer_groups(5, "01") == [0, 0, 0, 1, 1]
    assert layer_groups(3, [1]) == [None, None, None]


@pytest.fixture
def model_dir(tmp_path, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=6)


def test_probe_command_reports_every_layer(model_dir, capsys):
    assert main(["probe", model_dir, "--unmask", "001", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["measured"] for r in out["layers"]] == [False] * 4 + [True] * 2
    assert [r["group"] for r in out["layers"]] == [0, 0, 1, 1, 2, 2]
    assert out["mismatches"] == []


def test_probe_table_output(model_dir, capsys):
    assert main(["probe", model_dir, "--unmask", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "bidirectional" in out and "MISMATCH" not in out


def test_probe_exits_nonzero_on_mismatch(make_decoder, capsys, monkeypatch):
    model = make_decoder("llama", n_layers=4)
    # Simulate a kernel that silently ignores the unmasking.
    monkeypatch.setattr("spacy_cmllm.cli.probe_command.bidirectional_layers", lambda m: [False] * 4)
    assert report(model, "0011") == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_probe_bad_spec_and_path(model_dir, tmp_path, capsys):
    assert main(["probe", model_dir, "--unmask", "0x"]) == 2
    assert "E001" in capsys.readouterr().err
    assert main(["probe", str(tmp_path / "missing"), "--unmask", "01"]) == 2
    assert "E010" in capsys.readouterr().err


def test_only_coded_errors_become_exit_2(model_dir, monkeypatch, capsys):
    """Errors are recognised by type (CodedError), not by what their text happens to say."""
    from spacy_cmllm.cli import probe_command
    from spacy_cmllm.errors import CmllmError, CodedError

    def coded(args):
        raise CmllmError("explained")

    monkeypatch.setattr(probe_command, "run", coded)
    assert main(["probe", model_dir, "--unmask", "01"]) == 2
    assert "explained" in capsys.readouterr().err

    def bug(args):
        raise ValueError("[E001] looks coded but is a bug")

    monkeypatch.setattr(probe_command, "run", bug)
    with pytest.raises(ValueError, match="looks coded"):
        main(["probe", model_dir, "--unmask", "01"])
    assert issubclass(CmllmError, ValueError) and issubclass(CmllmError, CodedError)


def test_probe_reports_that_the_last_copy_sees_every_token(model_dir, capsys):
    assert main(["probe", model_dir, "--unmask", "000", "--repeat", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["repetition"]["repeat"] == 2
    assert out["repetition"]["see_every_token"] == out["repetition"]["tokens"] > 1
    assert main(["probe", model_dir, "--unmask", "000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["repetition"] is None
