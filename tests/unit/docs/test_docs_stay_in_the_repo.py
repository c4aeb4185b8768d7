"""The documentation a reader gets with the repository is complete in itself: no pointer to a file outside it.

README.md, docs/**, the services' and deploy's READMEs and the API's OpenAPI description are what users and
operators read; a reference to a document that is not in the repository (the product notes it was written
from) or a relative link that leaves the repository or leads nowhere is a dead end for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]

# Documents that exist only outside the repository, by name or by the folder they live in.
OUTSIDE = re.compile(r"\b(?:CONTRACT|DESIGN|TESTING|STYLE)\.md\b|\.\./shared\b|(?<![\w.-])shared/[A-Z]+\.md")
# Markdown links and images `[text](target)` / `![alt](target "title")`, and HTML href/src attributes.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|(?:href|src)=\"([^\"]+)\"")


def user_docs() -> list[Path]:
    docs = [REPO / "README.md", REPO / "deploy" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    docs += sorted((REPO / "services").glob("*/README.md"))
    return [d for d in docs if d.is_file()]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _relative_links(text: str) -> Iterator[str]:
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith(("#", "//")):
            continue  # a URL (https:, mailto:...) or an anchor in the same page
        yield target.split("#", 1)[0]


@pytest.mark.parametrize("doc", user_docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_a_document_names_no_file_outside_the_repository(doc: Path) -> None:
    found = [
        f"line {n}: {line.strip()}" for n, line in enumerate(doc.read_text().splitlines(), 1) if OUTSIDE.search(line)
    ]
    assert not found, "points outside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("doc", user_docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_in_the_repository(doc: Path) -> None:
    broken = []
    for target in _relative_links(doc.read_text()):
        if not target:
            continue
        resolved = (doc.parent / target).resolve()
        if not resolved.is_relative_to(REPO) or not resolved.exists():
            broken.append(target)
    assert not broken, f"links that leave the repository or lead nowhere: {broken}"


def test_the_openapi_description_names_no_file_outside_the_repository() -> None:
    from taifa_api.entrypoints.http.app import create_app

    from tests.unit.deploy.services_under_deploy import SERVICES

    schema = create_app(SERVICES["credential-api"].settings_from({})).openapi()  # type: ignore[arg-type]
    found = [text for text in _strings(schema) if OUTSIDE.search(text)]
    assert not found, f"the OpenAPI description points outside the repository: {found}"


@pytest.mark.parametrize(
    "text",
    [
        "See CONTRACT.md §3.",
        "as DESIGN.md says",
        "TESTING.md C8",
        "[style](../shared/STYLE.md)",
        "the ../shared notes",
        "in shared/CONTRACT.md",
    ],
)
def test_the_check_recognises_references_to_the_outside_documents(text: str) -> None:
    assert OUTSIDE.search(text)


@pytest.mark.parametrize("text", ["docs/testing.md", "docs/architecture.md", "shared by every pod", "the design"])
def test_the_check_lets_the_repositorys_own_docs_through(text: str) -> None:
    assert not OUTSIDE.search(text)


def test_relative_links_are_found_and_urls_and_anchors_skipped() -> None:
    text = '[a](docs/api.md#auth) [b](https://example.com/x.md) [c](#here) ![d](../../x.png "t") <a href="y.md">'
    assert list(_relative_links(text)) == ["docs/api.md", "../../x.png", "y.md"]
