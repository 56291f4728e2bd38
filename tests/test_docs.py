"""The docs pages agree with the code and with each other (the site itself: `nox -s docs`)."""

from __future__ import annotations

import pathlib
import re

from tupu_async.testing import DOWNLOAD_FAIL_WORD, MAGIC_OUTCOMES

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


# Pages other branches add (issues 9, 10, 12); the README already points at them.
def test_the_magic_word_table_lists_exactly_the_fakes_words() -> None:
    page = (DOCS / "fake-server.md").read_text(encoding="utf-8")
    table = re.findall(r"^\| `([^`]+)`", page, flags=re.MULTILINE)
    assert table == [*MAGIC_OUTCOMES, DOWNLOAD_FAIL_WORD]
    for word, outcome in MAGIC_OUTCOMES.items():
        assert f"| `{word}` | {outcome} |" in page


def test_every_page_is_in_the_site_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in DOCS.rglob("*.md"):
        assert page.relative_to(DOCS).as_posix() in nav, page


def test_the_readme_points_only_at_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(docs/[\w./-]+\.md)(?:#[\w-]+)?`", readme))
    assert named, "the README names its docs pages"
    missing = {p for p in named if not (ROOT / p).is_file()}
    assert not missing
    assert (ROOT / "benchmarks" / "README.md").is_file()


def test_every_public_name_has_a_reference_entry() -> None:
    import tupu_async.telemetry
    import tupu_async.testing

    pages = "".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: ([\w.]+)$", pages, flags=re.MULTILINE))
    for module in (tupu_async, tupu_async.testing, tupu_async.telemetry):
        public = {f"{module.__name__}.{name}" for name in module.__all__ if name != "__version__"}
        assert not public - documented, module.__name__
