"""The reference pages in docs/ are written from the code, and what is committed is what the
code gives now."""

import textwrap

import pytest
from spacy.util import registry

from spacy_cmllm.errors import Errors, Warnings
from spacy_cmllm.reference import (
    ROOT,
    configuration_page,
    docstring_parts,
    errors_page,
    stale_pages,
)

DOCS = ROOT / "docs"


def test_committed_reference_pages_are_what_the_code_gives():
    assert stale_pages(DOCS) == [], "run: python scripts/docs_reference.py"


@pytest.mark.parametrize("kind", ["architectures", "misc", "scorers", "loggers"])
def test_every_registered_function_has_a_section(kind):
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    # The package's own: the experiments register spacy-cmllm.TuneLogger.v1 in a study's trials.
    names = [
        name
        for name, func in getattr(registry, kind).get_all().items()
        if name.startswith("spacy-cmllm.") and func.__module__.startswith("spacy_cmllm")
    ]
    assert names
    for name in names:
        assert f"\n### {name}\n" in page, f"{name} is registered but not in docs/configuration.md (is it in setup.cfg?)"


def test_every_code_is_listed_with_its_message():
    page = (DOCS / "errors.md").read_text(encoding="utf-8")
    codes = [(c, getattr(cls, c)) for cls in (Errors, Warnings) for c in vars(cls) if c[:1] in "EW" and c[1:].isdigit()]
    assert len(codes) > 40
    for code, message in codes:
        assert f"\n### {code}\n" in page
        assert message.replace("{{", "{").replace("}}", "}")[:60] in page


def demo_v1(*, a: int = 1, old: str = "x"):
    """The first version.

    a (int): how many.
    old (str): a setting the next version dropped.
    """


def demo_v2(*, a: int = 2, b: bool = False):
    """The second version.

    a (int): how many, said over
        two lines.
    b (bool): new in v2.
    """


def test_a_new_version_is_documented_and_older_ones_are_compared_with_it(tmp_path):
    setup = tmp_path / "setup.cfg"
    setup.write_text(
        textwrap.dedent(f"""\
        [options.entry_points]
        spacy_misc =
            demo.Thing.v1 = {__name__}:demo_v1
            demo.Thing.v2 = {__name__}:demo_v2
        """)
    )
    page = configuration_page(setup)
    assert page.index("### demo.Thing.v2") < page.index("### demo.Thing.v1")
    assert "| `a` | `int` | `2` | how many, said over two lines. |" in page
    older = page[page.index("### demo.Thing.v1") :]
    assert "Parameters as [demo.Thing.v2](#demothingv2), without `b`; these differ:" in older
    assert "| `a` | `int` | `1` | how many. |" in older
    assert '| `old` | `str` | `"x"` | a setting the next version dropped. |' in older


def test_docstring_argument_lines_and_summary():
    summary, arguments = docstring_parts(demo_v2)
    assert summary == "The second version."
    assert arguments == {"a": ("int", "how many, said over two lines."), "b": ("bool", "new in v2.")}


def test_errors_page_names_the_exception_type_and_the_modules(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "errors.py").write_text(
        textwrap.dedent("""\
        class Errors:
            # Things
            E900 = "Bad {what}: give {{a dict}}."
            # Other things
            E901 = "Slow; going on."


        class Warnings:
            W900 = "Careful."
        """)
    )
    (package / "use.py").write_text(
        textwrap.dedent("""\
        import warnings
        from .errors import Errors, Warnings

        def check(x):
            err = CmllmTypeError(Errors.E900.format(what=x))
            warnings.warn(Errors.E901)
            warnings.warn(Warnings.W900)
            raise err
        """)
    )
    page = errors_page(package / "errors.py", package)
    assert "| [E900](#e900) | Things |" in page and "| [E901](#e901) | Other things |" in page
    assert "*Things.* Raised as `CmllmTypeError`. Used in `pkg/use.py`." in page
    assert "*Other things.* Shown as a warning: the run goes on." in page
    assert "[E900] Bad {what}: give {a dict}." in page
    assert "### W900" in page


def test_every_parameter_of_the_package_says_what_it_means():
    """A parameter added without an argument line in its docstring fails here, not in a
    user's hands."""
    from spacy_cmllm.reference import collect

    undocumented = [f"{e.name}: {p.name}" for e in collect() for p in e.parameters if not p.meaning]
    assert undocumented == []
