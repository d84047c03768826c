"""The speed and int8 benchmarks end to end on a tiny decoder: every section runs and reports
what the README's speed table reads."""
import json

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from tests.scripts import ROOT, load_script
from tests.tiny import TRAIN_DATA, save_tiny_decoder


def load_benchmark(name):
    return load_script(ROOT / "benchmarks" / f"{name}.py", f"{name}_script")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=4)


def test_speed_benchmark_reports_every_precision_and_the_cnn(tiny_dir, tmp_path):
    speed = load_benchmark("speed")
    result = speed.main(["--source", tiny_dir, "--words", "60", "--repeats", "1", "--train-steps", "1",
                         "--train-sentences", "2", "--position-docs", "2", "--tweets", "5", "--device", "cpu",
                         "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["ratios"] == result["ratios"]
    assert (tmp_path / "speed.png").stat().st_size > 0
    table = saved["precision_table"]
    modes = table["modes"]
    assert "fp32" in modes and "int8" in modes
    for row in modes.values():
        assert row["raw_hf_words_per_s"] > 0 and row["pipeline_words_per_s"] > 0
        assert row["decoder_calls"] >= 1
        assert row["transformer_vs_raw_hf"] == pytest.approx(row["transformer_words_per_s"] / row["raw_hf_words_per_s"])
    assert table["spacy_cnn_words_per_s"] > 0
    assert saved["packing"]["max_abs_difference"] <= 1e-4
    assert saved["packing"]["padding_waste"]["packed"] < saved["packing"]["padding_waste"]["unpacked"]
    tweets = saved["tweets"]
    if "skipped" not in tweets:
        assert tweets["tweets"] == 5
        assert set(tweets["words_per_s"]) == {"smollm2_fp32", "smollm2_int8", "spacy_cnn"} or "smollm2_bf16" in tweets["words_per_s"]


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    """A briefly trained tiny pipeline and a .spacy file of gold entities and tags."""
    from tests.tiny import build_pipeline, train

    path = tmp_path_factory.mktemp("trained")
    nlp = build_pipeline(tiny_dir, **{"@architectures": "spacy-cmllm.CausalMaskLLM.v3"})
    train(nlp, steps=5)
    nlp.to_disk(path / "model")
    docs = []
    for words, tags, biluo in TRAIN_DATA:
        doc = Doc(nlp.vocab, words=words, tags=tags)
        doc.ents = Example.from_dict(Doc(nlp.vocab, words=words), {"entities": biluo}).reference.ents
        docs.append(doc)
    DocBin(docs=docs).to_disk(path / "test.spacy")
    return path / "model", path / "test.spacy"


def test_int8_scores_compares_float_and_int8_on_the_same_docs(trained, tmp_path):
    model, data = trained
    out = tmp_path / "int8.json"
    int8_scores = load_benchmark("int8_scores")
    assert int8_scores.main([str(model), str(data), "--name", "tiny", "--out", str(out), "--smoothing", "0.3"]) == 0
    entry = json.loads(out.read_text())["tiny"]
    modes = entry["modes"]
    assert {"fp32", "int8"} <= set(modes) and entry["default_float"] in modes
    assert {row["words"] for row in modes.values()} == {sum(len(w) for w, _, _ in TRAIN_DATA)}
    default = modes[entry["default_float"]]
    assert entry["ner_f1_change"] == pytest.approx(modes["int8"]["ner_f1"] - default["ner_f1"], abs=0.011)
    assert entry["ner_f1_change_vs_fp32"] == pytest.approx(modes["int8"]["ner_f1"] - modes["fp32"]["ner_f1"], abs=0.011)
    assert (entry["int8_kernel"], entry["int8_weight_levels"]) in (("onednn", 127), ("onednn", 63), ("int_mm", 127), ("int_mm", 63))
    assert entry["int8_smoothing"] == 0.3
    low, high = entry["ner_f1_change_vs_fp32_ci95"]
    assert low <= entry["ner_f1_change_vs_fp32"] <= high
    assert entry["entities"] == sum(tag[0] in "BU" for _, _, biluo in TRAIN_DATA for tag in biluo)
    assert out.with_suffix(".png").stat().st_size > 0
    assert spacy.load(model).get_pipe("transformer").model.attrs["int8"] is False


def test_int8_smoothing_measures_each_alpha_against_float32(trained, tmp_path):
    model, data = trained
    out = tmp_path / "smoothing.json"
    assert load_benchmark("int8_smoothing").main([str(model), str(data), "--alphas", "0,0.5", "--name", "tiny", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["tiny"]
    assert set(entry["alphas"]) == {"0.0", "0.5"}
    for row in entry["alphas"].values():
        assert 0 < row["vector_relative_error"] < 0.5
        assert 0 <= row["ner_label_changed"] <= 1 and 0 <= row["tag_changed"] <= 1
    # Smoothing changes the int8 copy, so the two alphas cannot stray from float32 alike.
    assert entry["alphas"]["0.0"]["vector_relative_error"] != entry["alphas"]["0.5"]["vector_relative_error"]
    assert entry["best_alpha_by_vector_error"] in entry["alphas"]
    assert out.with_suffix(".png").stat().st_size > 0


def test_int8_profile_splits_each_precision_and_bounds_int8(trained, tmp_path):
    model, data = trained
    out = tmp_path / "profile.json"
    assert load_benchmark("int8_profile").main([str(model), str(data), "--name", "tiny", "--docs", "1", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["tiny"]
    modes = entry["modes"]
    assert {"fp32", "int8"} <= set(modes) and entry["docs"] == 1
    assert entry["words"] == len(TRAIN_DATA[0][0])
    int8_ops = {"onednn::qlinear_pointwise", "aten::_int_mm"}
    for mode, row in modes.items():
        assert row["seconds"]["products"] > 0 and row["seconds"]["attention"] > 0
        assert sum(row["seconds"].values()) == pytest.approx(row["profiled_wall_s"], rel=0.02, abs=0.01)
        # The float runs' products are float matmuls, the int8 run's the int8 kernel.
        assert row["product_ops"] and (set(row["product_ops"]) <= int8_ops) == (mode == "int8")
    assert set(entry["ceiling_over"]) == set(modes) - {"int8"}
    for mode, ceiling in entry["ceiling_over"].items():
        assert ceiling >= modes[mode]["profiled_wall_s"] / modes["int8"]["profiled_wall_s"]
    assert out.with_suffix(".png").stat().st_size > 0


def test_repetition_cost_times_every_setting_against_one_copy(tiny_dir, tmp_path):
    cost = load_benchmark("repetition_cost")
    docs = DocBin(docs=[Doc(spacy.blank("en").vocab, words=words) for words, _, _ in TRAIN_DATA * 3])
    docs.to_disk(tmp_path / "docs.spacy")
    out = tmp_path / "cost.json"
    assert cost.main([str(tmp_path / "docs.spacy"), "--base", tiny_dir, "--docs", "0", "--train-docs", "0",
                      "--repeats", "1,3", "--exits", "0,2", "--window", "16", "--stride", "12", "--rounds", "1",
                      "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    settings = [(r["repeat"], r["exit_layer"]) for r in result["rows"]]
    assert settings == [(1, 0), (3, 0), (1, 2), (3, 2)]
    assert result["rows"][0]["predict_cost_vs_r1"] == result["rows"][0]["train_cost_vs_r1"] == 1.0
    assert all(r["predict_words_per_s"] > 0 and r["train_words_per_s"] > 0 for r in result["rows"])
    assert result["words"] == sum(len(w) for w, _, _ in TRAIN_DATA * 3)
    assert (tmp_path / "cost.png").stat().st_size > 0
