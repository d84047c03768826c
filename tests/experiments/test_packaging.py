"""The experiments stay out of the wheel: setup.cfg packages spacy_cmllm only, no package
module imports the experiments or Ray Tune, and no entry point names them."""

import ast
import configparser

from setuptools import find_packages

from tests.scripts import ROOT


def setup_cfg():
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser


def test_the_wheel_holds_the_package_and_not_the_experiments():
    include = setup_cfg()["options.packages.find"]["include"].split()
    packages = find_packages(where=str(ROOT), include=include)
    assert "spacy_cmllm" in packages and "spacy_cmllm.pipeline" in packages
    assert all(p == "spacy_cmllm" or p.startswith("spacy_cmllm.") for p in packages), packages
    assert not any("study" in p.split(".") for p in packages)
    assert "experiments" in find_packages(where=str(ROOT))  # it is a package, just not the wheel's


def test_no_package_module_reaches_the_experiments_or_ray_tune():
    for path in sorted((ROOT / "spacy_cmllm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            for name in names:
                assert not name.startswith(("experiments", "ray.tune")), f"{path.relative_to(ROOT)} imports {name}"


def test_no_entry_point_names_the_study():
    entry_points = setup_cfg()["options.entry_points"]
    for group, lines in entry_points.items():
        assert "study" not in lines and "Tune" not in lines, group
