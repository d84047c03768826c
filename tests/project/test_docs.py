"""The README and docs/ cannot drift from the code: the README's Python runs (on a tiny
trained pipeline in place of the real one), every config snippet parses with spaCy's
config system (the README's builds a pipeline), and every relative link, anchor and
repository file the pages name exists."""

import re
from pathlib import Path

import pytest
import spacy
from thinc.api import Config

from spacy_cmllm.reference import anchor
from tests.scripts import ROOT
from tests.tiny import save_tiny_decoder

README = ROOT / "README.md"
PAGES = [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Top-level folders of the repository: a code span starting with one names a file in it.
REPO_DIRS = (
    "configs/",
    "scripts/",
    "benchmarks/",
    "spacy_cmllm/",
    "experiments/",
    "tests/",
    "assets/",
    "docs/",
    ".ci/",
)
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


def blocks(path: Path, language: str):
    """(marker, code) of each fenced block in ``language``; marker is the HTML comment on
    the line before the fence, if any."""
    text = path.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        if match.group(1) != language:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = re.match(r"<!--\s*(.*?)\s*-->", before)
        yield (marker.group(1) if marker else ""), match.group(2)


def prose(path: Path) -> str:
    """The page without its fenced blocks."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def headings(path: Path):
    return {anchor(m.group(1).strip()) for m in re.finditer(r"^#{1,6} (.+)$", prose(path), re.M)}


def test_there_are_pages_and_the_readme_is_short():
    assert len(PAGES) >= 9
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory, byte_level_tokenizer):
    """A briefly trained transformer + tagger + ner pipeline on a tiny random decoder."""
    from tests.tiny import build_pipeline, train

    path = tmp_path_factory.mktemp("docs")
    model_dir = save_tiny_decoder(path / "decoder", byte_level_tokenizer, n_layers=4)
    nlp = build_pipeline(model_dir, **{"@architectures": "spacy-cmllm.CausalMaskLLM.v3"})
    train(nlp, steps=3)
    nlp.to_disk(path / "pipeline")
    return path / "pipeline"


def test_readme_python_runs(tiny_pipeline, monkeypatch, capsys):
    snippets = list(blocks(README, "python"))
    assert snippets, "the README shows no Python"
    real_load = spacy.load

    def load(name, *args, **kwargs):
        # A package name the README installs stands for the tiny pipeline; paths load as given.
        return real_load(name if Path(str(name)).exists() else tiny_pipeline, *args, **kwargs)

    monkeypatch.setattr(spacy, "load", load)
    ran = 0
    for marker, code in snippets:
        assert marker.startswith(("test:", "not run:")), (
            f"mark the README snippet as 'test: ...' or 'not run: why':\n{code}"
        )
        if marker.startswith("test:"):
            exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
            ran += 1
    assert ran and capsys.readouterr().out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_snippets_compile(page):
    for _, code in blocks(page, "python"):
        compile(code, str(page), "exec")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_snippets_parse(page):
    for _, text in blocks(page, "ini"):
        config = Config().from_str(text, interpolate=False)
        assert config, f"an empty config snippet in {page.name}"


def test_readme_config_builds_a_pipeline():
    """The README's minimal config, with the [nlp] block it leaves out, builds a pipeline
    (weights load at initialize, so the model's name need not be loadable here)."""
    ((_, text),) = list(blocks(README, "ini"))
    snippet = Config().from_str(text, interpolate=False)
    names = list(snippet["components"])
    config = (
        Config()
        .from_str('[nlp]\nlang = "en"\npipeline = [' + ", ".join(f'"{n}"' for n in names) + "]\n")
        .merge(snippet)
    )
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == names
    settings = nlp.get_pipe("transformer").model.attrs["settings"]
    assert settings["unmask"] == "0011" and settings["lora"]["target_modules"] == "all-linear"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_and_anchors_exist(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
        if fragment and resolved.suffix == ".md":
            assert fragment in headings(resolved), f"{page.name} links to {target}: no such heading"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_repository_files_the_page_names_exist(page):
    text = page.read_text(encoding="utf-8")
    named = set(re.findall(r"`([^`\s]+)`", prose(page)))
    # Scripts and benchmarks run in the fenced commands: python scripts/x.py, python -m benchmarks.y.
    named |= set(re.findall(r"\bpython3? (\S+\.py)\b", text))
    named |= {module.replace(".", "/") + ".py" for module in re.findall(r"\bpython3? -m (benchmarks\.\w+)", text)}
    for name in sorted(named):
        if not name.startswith(REPO_DIRS) or re.search(r"[*<>{}$]", name):
            continue
        assert (ROOT / name.rstrip("/")).exists(), f"{page.name} names {name}, which is not in the repository"
