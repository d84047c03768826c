"""project.yml as spaCy's project loader reads it."""

from pathlib import Path

from weasel.util import load_project_config

ROOT = Path(__file__).parents[2]


def test_every_dependency_and_output_is_one_path():
    # The loader's interpolation turns two list items that are each only a variable into one
    # string ("a.csv, b.csv"), which no file matches: the command then refuses to run.
    config = load_project_config(ROOT)
    for command in config["commands"]:
        for key in ("deps", "outputs", "outputs_no_cache"):
            for path in command.get(key, []):
                assert " " not in path.strip(), (command["name"], key, path)
