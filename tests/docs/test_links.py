"""Every relative link in README.md and docs/*.md leads to a file that exists, and to a heading it has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _prose(path: Path) -> str:
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces as hyphens."""
    seen: dict[str, int] = {}
    result: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(path), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links() -> list[tuple[Path, str]]:
    return [
        (document, target)
        for document in DOCUMENTS
        for target in LINK.findall(_prose(document))
        if not re.match(r"[a-z]+:", target)
    ]


def test_the_slugs_are_the_ones_github_makes() -> None:
    # GIVEN a heading with code, punctuation and a repeat
    # WHEN its anchors are computed
    # THEN they are GitHub's
    assert "classification-charge_outcomepy-stripe_paymentspy" in anchors(ROOT / "docs" / "ARCHITECTURE.md")
    assert "what-the-design-guarantees" in anchors(ROOT / "docs" / "RELIABILITY.md")


def test_the_documents_have_relative_links_to_check() -> None:
    # GIVEN the README and the docs
    # WHEN their relative links are collected
    # THEN there are many, from the README and from docs/ alike (the pattern did not silently miss them)
    found = links()
    assert sum(1 for document, _ in found if document.name == "README.md") >= 30
    assert any(document.parent.name == "docs" for document, _ in found)


@pytest.mark.parametrize(
    ("document", "target"), links(), ids=lambda value: value if isinstance(value, str) else value.name
)
def test_each_relative_link_leads_to_an_existing_file_and_heading(document: Path, target: str) -> None:
    # GIVEN a relative link, with or without an anchor
    path_part, _, anchor = target.partition("#")
    destination = (document.parent / path_part).resolve() if path_part else document

    # WHEN its destination is looked up
    # THEN the file (or folder) exists, and so does the heading the anchor names
    assert destination.exists(), f"{document.name} links to missing {path_part}"
    if anchor and destination.suffix == ".md":
        assert anchor in anchors(destination), f"{document.name} links to missing heading {target}"
