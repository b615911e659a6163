"""The documentation's code runs: every fenced ```python block of the pages below is executed,
in order, in one namespace per page (so a page reads as one program). The snippets assert what
they claim (conversion identities, marginal preservation, the minimiser of an objective, an
agent's update and actions); this test only runs them.

Blocks inside admonitions or lists (indented) are dedented first. A page's blocks share
nothing with another page's.
"""

import re
import textwrap
from pathlib import Path

import pytest

from interpolant_rl import agents


DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["index.md", "guides/choosing.md", "extending.md"]
# ```python ... ``` fences, possibly indented (the closing fence at the same indentation).
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """`(line, code)` for each ```python block of `page`, in order."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, textwrap.dedent(match["body"]))
        for match in FENCE.finditer(text)
    ]


def test_blocks_are_found():
    blocks = python_blocks(DOCS / "extending.md")
    assert len(blocks) >= 4, "docs/extending.md should have its worked snippets"
    assert all("```" not in code for _, code in blocks)


@pytest.mark.parametrize("page", PAGES)
def test_page_snippets_run(page):
    path = DOCS / page
    blocks = python_blocks(path)
    assert blocks, f"{path} has no ```python blocks"
    registry = dict(agents.AGENTS)  # a snippet may register an agent: restore the registry
    namespace = {"__name__": "docs_" + page.replace("/", "_").removesuffix(".md")}
    try:
        for line, code in blocks:
            try:
                exec(compile(code, f"{path}:{line}", "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"the ```python block at {path}:{line} failed") from error
    finally:
        agents.AGENTS.clear()
        agents.AGENTS.update(registry)
