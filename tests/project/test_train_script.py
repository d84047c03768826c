import pytest

from tests.scripts import ROOT, load_script

train_script = load_script(ROOT / "scripts" / "train.py", "train_script")


@pytest.mark.parametrize("value", ["00111", "0021", "", "abcd", "12"])
def test_a_bad_spec_stops_the_script_before_training(value, capsys):
    with pytest.raises(SystemExit):
        train_script.main(["configs/default.cfg", "training/never", "--unmask", value])
    assert "E140" in capsys.readouterr().err
