"""Links between README.md and docs/*.md resolve: each relative link names a file that exists
and each ``#anchor`` a heading of the page it points to (GitHub's slugs), so a renamed heading
or a moved page fails here rather than leaves a reader at the top of the wrong page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCES = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)


def _prose(page: Path) -> str:
    """The page without its code blocks (a ``# comment`` in a shell block is no heading)."""
    return FENCES.sub("", page.read_text("utf-8"))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, code ticks and punctuation dropped, lower
    case, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for match in HEADING.finditer(_prose(page)):
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def test_slugs_are_githubs() -> None:
    assert _slug("The journal") == "the-journal"
    assert _slug("What a run does, in order") == "what-a-run-does-in-order"
    assert _slug("`conform` and the [contract](x.md)") == "conform-and-the-contract"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for link in LINK.findall(_prose(page)):
        if re.match(r"[a-z]+:", link):
            continue  # http(s), mailto: not this test's business
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{link}: no heading #{fragment} in {target.name}")
    assert not broken, broken
