"""The sweep's report: mean ± std over seeds, paired differences against 0000, 1111 and the
shipped config with their t-intervals, time ratios, plots; one way of scoring per summary."""

import pytest

from experiments import report


def _row(unmask, seed, test_f1, model="smollm2"):
    return {
        "model": model,
        "unmask": unmask,
        "seed": str(seed),
        "max_steps": "50",
        "batch_words": "256",
        "dev_docs": "25",
        "test_docs": "25",
        "dev_f1": str(test_f1 - 1),
        "test_f1": str(test_f1),
        "tag_acc": "90.0",
        "train_seconds": "100",
    }


def test_summary_pairs_seeds_against_0000_and_1111():
    rows = [_row("0000", s, f) for s, f in enumerate([50, 52, 54])]
    rows += [_row("1111", s, f) for s, f in enumerate([51, 50, 55])]
    rows += [_row("0011", s, f) for s, f in enumerate([53, 55, 54])]
    rows += [_row("spacy-cnn", s, 40, model="spacy-cnn") for s in range(3)]
    configs = {e["unmask"]: e for e in report.summarise(rows)["configs"]}
    assert configs["0011"]["test_f1"] == {"mean": 54.0, "std": 1.0, "n": 3}
    # Per seed: 53-50, 55-52, 54-54 -> +3, +3, 0: two wins of three.
    # 95 % t-interval by hand: 2.0 -/+ t(0.975, 2 df) 4.3027 x 1.7321 / sqrt(3) = 2.0 -/+ 4.3027.
    assert configs["0011"]["test_f1_vs_0000"] == {
        "mean": 2.0,
        "std": 1.73,
        "n": 3,
        "wins": 2,
        "ci95": [-2.3, 6.3],
        "verdict": "cannot tell",
    }
    assert configs["0011"]["dev_f1_vs_0000"]["mean"] == 2.0
    assert configs["0011"]["tag_acc_vs_0000"] == {
        "mean": 0.0,
        "std": 0.0,
        "n": 3,
        "wins": 0,
        "ci95": [0.0, 0.0],
        "verdict": "cannot tell",
    }
    assert configs["0011"]["test_f1_vs_1111"]["mean"] == pytest.approx((2 + 5 - 1) / 3, abs=0.01)
    assert "test_f1_vs_0000" not in configs["0000"] and "test_f1_vs_0000" not in configs["spacy-cnn"]


def test_overridden_runs_are_their_own_configuration_paired_with_the_shipped_one():
    rows = [_row("0011", s, f) for s, f in enumerate([50, 52, 54])]
    rows += [{**_row("0011", s, f), "overrides": "a.b=1"} for s, f in enumerate([51, 55])]
    entries = {e["overrides"]: e for e in report.summarise(rows)["configs"]}
    assert entries[""]["test_f1"]["n"] == 3 and "test_f1_vs_shipped" not in entries[""]
    assert entries["a.b=1"]["test_f1_vs_shipped"]["mean"] == 2.0 and entries["a.b=1"]["test_f1_vs_shipped"]["n"] == 2
    # The tweak names the bar.
    assert report.label(entries["a.b=1"]) == "0011 parser b=1"
    assert report.short_setting('x.lora.target_modules=["q_proj","up_proj"]') == "target_modules=q,up"
    assert (
        report.label({"unmask": "0011", "head": "bio_tagger", "overrides": "a.rate=0.003"})
        == "0011 bio_tagger rate=0.003"
    )


def test_a_paired_difference_carries_the_studys_verdict():
    rows = [_row("0000", s, f) for s, f in enumerate([50, 52, 54])]
    rows += [_row("0011", s, f) for s, f in enumerate([51.5, 53.2, 55.8])]
    rows += [_row("1111", s, f) for s, f in enumerate([52.5, 54.2, 56.9])]
    rows += [_row("1100", s, f) for s, f in enumerate([51, 53])]
    configs = {e["unmask"]: e for e in report.summarise(rows)["configs"]}
    # +1.5, +1.2, +1.8: interval above zero, every seed positive.
    assert configs["0011"]["test_f1_vs_0000"]["verdict"] == "held"
    # -1.0, -1.0, -1.1 against 1111: interval below zero, every seed negative.
    assert configs["0011"]["test_f1_vs_1111"]["verdict"] == "not held"
    # Two seeds say nothing, however far apart.
    assert configs["1100"]["test_f1_vs_0000"]["verdict"] == "cannot tell"


def test_a_setting_costs_its_time_against_the_shipped_config_and_is_plotted(tmp_path):
    rows = [{**_row("0000", s, f), "train_seconds": "100", "eval_seconds": "10"} for s, f in enumerate([50, 52, 54])]
    rows += [
        {**_row("0000", s, f), "overrides": "m.repeat=2", "train_seconds": "250", "eval_seconds": "15"}
        for s, f in enumerate([51, 55, 56])
    ]
    summary = report.summarise(rows)
    repeated = next(e for e in summary["configs"] if e["overrides"])
    assert repeated["train_time_vs_shipped"] == 2.5 and repeated["eval_time_vs_shipped"] == 1.5
    assert repeated["train_time_vs_shipped_per_seed"] == {"0": 2.5, "1": 2.5, "2": 2.5}
    assert (
        repeated["test_f1_vs_shipped"]["mean"] == pytest.approx(2.0)
        and len(repeated["test_f1_vs_shipped"]["ci95"]) == 2
    )
    report.plot_time(summary, tmp_path / "time.png")
    assert (tmp_path / "time.png").stat().st_size > 0


def test_a_summary_reads_one_way_of_scoring_and_says_which(tmp_path):
    from experiments.rows import COLUMNS, append_row

    base = {
        "model": "smollm2",
        "config": "default.cfg",
        "head": "bio_tagger",
        "overrides": "",
        "max_steps": 4,
        "batch_words": 40,
        "dev_docs": 0,
        "test_docs": 0,
        "train_seconds": 10,
        "cpu": "AVX2",
        "device": "cpu",
    }
    path = tmp_path / "rows.csv"
    # Seed 0 scored both ways (the harness's default), seed 1 on gold tokens only.
    append_row(
        path,
        {
            **base,
            "unmask": "0011",
            "seed": 0,
            "dev_ner_f1": 80,
            "test_ner_f1": 70,
            "test_tag_acc": 90,
            "dev_ner_f1_text": 81,
            "test_ner_f1_text": 71,
            "test_tag_acc_text": 91,
            "eval_seconds": 5,
            "eval_seconds_text": 6,
        },
    )
    append_row(
        path,
        {
            **base,
            "unmask": "0011",
            "seed": 1,
            "dev_ner_f1": 82,
            "test_ner_f1": 72,
            "test_tag_acc": 92,
            "eval_seconds": 5,
        },
    )
    assert len(COLUMNS) == len(set(COLUMNS))
    gold = tmp_path / "gold.json"
    report.report(csv=path, scoring="gold", summary=gold, plot_path=tmp_path / "gold.png")
    text = tmp_path / "text.json"
    report.report(csv=path, scoring="text", summary=text)
    import json

    gold, text = json.loads(gold.read_text()), json.loads(text.read_text())
    assert gold["scoring"] == "gold" and gold["configs"][0]["test_f1"] == {"mean": 71.0, "std": 1.41, "n": 2}
    assert gold["configs"][0]["eval_seconds"] == 5.0
    assert text["scoring"] == "text" and text["configs"][0]["test_f1"] == {"mean": 71.0, "std": None, "n": 1}
    assert text["configs"][0]["eval_seconds"] == 6.0 and text["configs"][0]["cpu"] == ["AVX2"]
    assert (tmp_path / "gold.png").stat().st_size > 10_000


def test_runs_on_different_machines_are_kept_apart_and_paired_only_on_one():
    rows = [{**_row("0000", s, f), "cpu": "AMX"} for s, f in enumerate([50, 52, 54])]
    rows += [{**_row("0011", s, f), "cpu": "AMX"} for s, f in enumerate([53, 55, 54])]
    rows += [{**_row("0011", s, f), "cpu": "AVX2", "train_seconds": "300"} for s, f in enumerate([40, 41, 42])]
    configs = {(e["unmask"], tuple(e["cpu"])): e for e in report.summarise(rows)["configs"]}
    assert configs[("0011", ("AMX",))]["test_f1"]["mean"] == 54.0
    assert (
        configs[("0011", ("AVX2",))]["test_f1"]["mean"] == 41.0 and configs[("0011", ("AVX2",))]["train_seconds"] == 300
    )
    # AMX's causal runs are no reference for the AVX2 runs.
    assert configs[("0011", ("AMX",))]["test_f1_vs_0000"]["mean"] == 2.0
    assert "test_f1_vs_0000" not in configs[("0011", ("AVX2",))]


def _write(path, unmask, seeds, test_f1, cpu="AMX", overrides=""):
    from experiments.rows import append_row

    for seed in seeds:
        append_row(
            path,
            {
                "model": "smollm2",
                "config": "default.cfg",
                "head": "bio_tagger",
                "unmask": unmask,
                "overrides": overrides,
                "seed": seed,
                "max_steps": 4,
                "batch_words": 40,
                "dev_docs": 0,
                "test_docs": 0,
                "dev_ner_f1": test_f1 + 5,
                "test_ner_f1": test_f1 + seed,
                "test_tag_acc": 90,
                "train_seconds": 60,
                "cpu": cpu,
                "device": "cpu",
            },
        )


def test_a_report_reads_several_files_and_refuses_a_run_found_in_two(tmp_path):
    import json

    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    _write(first, "0011", [0, 1, 2], 80)
    _write(second, "0011", [0, 1, 2], 82, overrides="m.repeat=2")
    summary = tmp_path / "both.json"
    assert report.report(csv=[first, second], summary=summary, time_plot=tmp_path / "time.png") == 0
    entries = {e["overrides"]: e for e in json.loads(summary.read_text())["configs"]}
    assert entries[""]["test_f1"]["mean"] == 81.0 and entries["m.repeat=2"]["test_f1"]["mean"] == 83.0
    assert entries["m.repeat=2"]["test_f1_vs_shipped"]["mean"] == 2.0
    # The same run in two files would count its seed twice.
    _write(second, "0011", [1], 99)
    with pytest.raises(SystemExit, match="also in"):
        report.report(csv=[first, second])
    # The same configuration and seed on another machine is another run.
    third = tmp_path / "c.csv"
    _write(third, "0011", [0], 70, cpu="AVX2")
    assert report.report(csv=[first, third], summary=summary) == 0
    machines = {tuple(e["cpu"]): e["test_f1"]["n"] for e in json.loads(summary.read_text())["configs"]}
    assert machines == {("AMX",): 3, ("AVX2",): 1}


def test_a_variant_is_timed_only_against_the_shipped_config_at_its_own_budget():
    rows = [{**_row("0011", s, 50), "train_seconds": "100"} for s in range(2)]
    rows += [{**_row("0011", s, 50), "overrides": "m.repeat=2", "train_seconds": "200"} for s in range(2)]
    rows += [{**_row("0011", s, 50), "overrides": "m.repeat=2", "max_steps": "99"} for s in range(2)]
    timed = {
        e["max_steps"]: e.get("train_time_vs_shipped") for e in report.summarise(rows)["configs"] if e["overrides"]
    }
    assert timed == {50: 2.0, 99: None}


def test_time_ratios_pair_seeds_where_the_means_would_mix_sessions():
    rows = [{**_row("0011", s, 50), "train_seconds": t} for s, t in [(0, "100"), (1, "300")]]
    rows += [{**_row("0011", 1, 50), "overrides": "m.repeat=2", "train_seconds": "600"}]
    (entry,) = [e for e in report.summarise(rows)["configs"] if e["overrides"]]
    assert entry["train_time_vs_shipped"] == 3.0 and entry["train_time_vs_shipped_per_seed"] == {"1": 2.0}


def test_the_time_plot_names_every_point_clear_of_other_names_and_points():
    # The crowding of the committed plot: points a minute and a few tenths apart, with long
    # names that reach across their neighbours.
    rows = []
    for unmask, overrides, minutes, f1 in [
        ("0011", "", 20, 88.3),
        ("0011", "components.transformer.model.hidden_layers=[20]", 16, 87.9),
        ("0011", 'x.lora.target_modules=["q_proj","k_proj","v_proj","o_proj"]', 21, 88.2),
        ("0000", "", 20.5, 87.2),
        ("0000", "components.transformer.model.repeat=2", 28.5, 89.1),
        ("0011", "components.transformer.model.repeat=2", 39.5, 88.9),
        ("0011", "components.transformer.model.repeat=4", 42, 89.2),
    ]:
        rows += [
            {**_row(unmask, s, f1 + 0.1 * s), "overrides": overrides, "train_seconds": str(60 * minutes)}
            for s in range(3)
        ]
    summary = report.summarise(rows)
    fig = report.time_figure(summary)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    names = [t for t in ax.texts if t.get_text()]
    assert len(names) == 7
    boxes = [t.get_window_extent(renderer) for t in names]
    frame = ax.get_window_extent(renderer)
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(other) for other in boxes[i + 1 :]), names[i].get_text()
        # Clear of every other point (each name's own point sits at its start or end).
        points = [ax.transData.transform(t.xy) for j, t in enumerate(names) if j != i]
        assert not any(box.contains(px, py) for px, py in points), names[i].get_text()
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), names[i].get_text()
