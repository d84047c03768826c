"""The package's boundaries: the Hugging Face side (``spacy_cmllm`` and ``spacy_cmllm.decoder``)
imports neither spaCy nor thinc, spaCy finds every registered function through the entry
points in setup.cfg without being told to import spacy_cmllm, and no two modules share a name."""

import ast
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import spacy_cmllm
from spacy_cmllm.reference import entry_points

PACKAGE = Path(spacy_cmllm.__file__).parent
ROOT = PACKAGE.parent
# What the Hugging Face side must never pull in.
SPACY_SIDE = ("spacy", "thinc", "spacy_transformers")
# The entry-point groups spaCy reads, and the registry each fills.
REGISTRIES = {
    "spacy_factories": "factories",  # read through registry._entry_point_factories
    "spacy_architectures": "architectures",
    "spacy_misc": "misc",
    "spacy_loggers": "loggers",
    "spacy_scorers": "scorers",
}


def fresh_python(code: str) -> dict:
    """Run ``code`` in a new interpreter (nothing imported yet) and return the JSON it prints last."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_hugging_face_side_imports_neither_spacy_nor_thinc():
    code = f"""
import json, pkgutil, sys
import spacy_cmllm
from spacy_cmllm.decoder import add_lora, bidirectional_layers, load_decoder, unmask_layers
import spacy_cmllm.decoder as decoder
for module in pkgutil.iter_modules(decoder.__path__):
    __import__("spacy_cmllm.decoder." + module.name)
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {SPACY_SIDE!r})))
"""
    assert fresh_python(code) == []


def imports_of(path: Path):
    """(module, level) of every import in a file, wherever it stands (functions and
    ``if TYPE_CHECKING:`` blocks included)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level


def test_decoder_modules_import_nothing_from_spacy_thinc_or_the_pipeline():
    """The static side of the test above: also the imports inside functions, which a run
    may never reach."""
    found = []
    for path in sorted((PACKAGE / "decoder").glob("*.py")):
        for module, level in imports_of(path):
            top = module.split(".")[0]
            if level == 0 and top in SPACY_SIDE:
                found.append(f"{path.name}: {module}")
            # Outside decoder/, only the modules every side shares.
            if (level == 2 and top not in ("errors", "hardware")) or level > 2:
                found.append(f"{path.name}: {'.' * level}{module}")
            if (
                level == 0
                and top == "spacy_cmllm"
                and module.split(".")[1:2] not in (["decoder"], ["errors"], ["hardware"])
            ):
                found.append(f"{path.name}: {module}")
    assert not found


def test_no_two_modules_share_a_name():
    """A name says what a module does, once: `packing` or `iob2` in two places said it twice."""
    names = [path.stem for path in PACKAGE.rglob("*.py") if path.stem not in ("__init__", "__main__")]
    names += [path.parent.name for path in PACKAGE.rglob("*/__init__.py")]
    assert [name for name, count in Counter(names).items() if count > 1] == []


def test_spacy_finds_every_entry_point_without_importing_spacy_cmllm():
    """As a packaged pipeline loads: spaCy resolves each name through the entry points, and
    each resolves to the function setup.cfg names."""
    groups = {group: pairs for group, pairs in entry_points().items() if group in REGISTRIES}
    assert set(groups) == set(REGISTRIES)
    code = f"""
import importlib, json, sys
import spacy
imported_first = "spacy_cmllm" in sys.modules
found = {{}}
for group, pairs in {groups!r}.items():
    # spaCy reads factories' entry points through a registry of their own, and files
    # each factory in registry.factories once its module has run Language.factory.
    attr = "_entry_point_factories" if group == "spacy_factories" else {REGISTRIES!r}[group]
    registry = getattr(spacy.registry, attr)
    for name, target in pairs:
        module, attr = target.split(":")
        found[name] = registry.get(name) is getattr(importlib.import_module(module), attr)
nlp = spacy.blank("en")
nlp.add_pipe("bio_tagger")
print(json.dumps({{"imported_first": imported_first, "found": found, "pipeline": nlp.pipe_names}}))
"""
    result = fresh_python(code)
    assert result["imported_first"] is False
    assert result["found"] == {name: True for pairs in groups.values() for name, _ in pairs}
    assert result["pipeline"] == ["bio_tagger"]


def test_every_function_the_package_registers_has_an_entry_point():
    """Registered on import but without an entry point, a function would work in a process
    that happened to import its module and fail in a packaged pipeline."""
    groups = {
        group: sorted(name for name, _ in pairs) for group, pairs in entry_points().items() if group in REGISTRIES
    }
    code = f"""
import json, pkgutil
import spacy
import spacy_cmllm
for module in pkgutil.walk_packages(spacy_cmllm.__path__, "spacy_cmllm."):
    if module.name.rsplit(".", 1)[-1] != "__main__":
        __import__(module.name)
registered = {{}}
for group, attr in {REGISTRIES!r}.items():
    functions = getattr(spacy.registry, attr).get_all()
    registered[group] = sorted(name for name, func in functions.items()
                               if getattr(func, "__module__", "").startswith("spacy_cmllm"))
print(json.dumps(registered))
"""
    assert fresh_python(code) == groups
