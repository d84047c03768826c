import json
import re
import subprocess
from pathlib import Path

import spacy_cmllm
from spacy_cmllm.hardware import cpu_capability
from spacy_cmllm.provenance import git_commit, package_versions, provenance

ROOT = Path(__file__).parents[1]


def test_provenance_names_the_checked_out_commit_versions_and_cpu():
    record = provenance()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert record["commit"] == head.stdout.strip() and isinstance(record["dirty"], bool)
    else:  # an unpacked source tree: no commit to claim
        assert record["commit"] is None and record["dirty"] is None
    assert record["versions"]["spacy-cmllm"] == spacy_cmllm.__version__
    assert record["versions"]["torch"] and record["versions"]["spacy"]
    assert record["machine"]["cpu"] == cpu_capability() and record["machine"]["device"] == "cpu"
    assert record["recorded"].endswith("Z")
    json.dumps(record)  # it goes into a results file as it is


def test_outside_a_checkout_no_commit_is_claimed(tmp_path):
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}


def test_a_changed_result_does_not_make_the_code_dirty(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "rows.csv").write_text("a\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "benchmarks" / "results" / "rows.csv").write_text("a\n1\n")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path)["dirty"] is True


def test_a_package_that_is_not_installed_has_no_version():
    assert package_versions(["surely-not-an-installed-distribution"]) == {"surely-not-an-installed-distribution": None}


def test_every_benchmark_records_its_provenance_through_the_shared_helper():
    """One recorder: each benchmark that writes results calls provenance(), itself or in the
    module of measurements it runs, and no module of benchmarks/ describes the machine by
    hand (platform, ATen's capability) beside it."""
    benchmarks = ROOT / "benchmarks"
    sources = {path: path.read_text(encoding="utf-8") for path in sorted(benchmarks.rglob("*.py"))}
    for path, source in sources.items():
        assert "platform." not in source and "get_cpu_capability()," not in source, path.name
        if "__main__" not in source:  # a module of measurements that a benchmark imports
            continue
        helpers = [benchmarks / f"{name}.py" for name in re.findall(r"^from \.(\w+) import", source, re.M)]
        assert any("provenance(" in text for text in [source, *(sources.get(helper, "") for helper in helpers)]), (
            f"{path.name} writes results without provenance()"
        )
