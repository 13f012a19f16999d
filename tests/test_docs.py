"""The manual (docs/, a mkdocs site) builds with strict links, its architecture page lists the
rooms the code has, and the README stays a front door that links into it.

``python tests/test_docs.py`` prints the rooms block to paste into docs/architecture.md."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- rooms:start -->\n", "<!-- rooms:end -->"


def rooms() -> str:
    """Every module of harness/ with the first line of its docstring, folder by folder."""
    lines = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        lines.append(f"- `{relative}`: {' '.join(doc.split(chr(10) + chr(10))[0].split())}")
    return "\n".join(lines) + "\n"


def test_the_architecture_page_lists_every_module_with_its_docstring():
    text = (REPO / "docs" / "architecture.md").read_text()
    block = text[text.index(START) + len(START):text.index(END)]
    assert block == rooms(), "docs/architecture.md's rooms are stale: paste `python tests/test_docs.py`"


def test_the_docs_site_builds_with_strict_links(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # the theme's notice of its end of life
    # not -q: mkdocs counts only the warnings it logs, and -q logs none, so strict would pass anything
    assert out.returncode == 0 and "WARNING -" not in out.stderr, out.stdout + out.stderr
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()


def test_every_docs_page_is_in_the_navigation():
    nav = (REPO / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    assert [p for p in pages if f": {p}" not in nav] == []


def test_the_readme_is_a_front_door_whose_links_into_the_docs_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert targets, "the README links into the manual"
    assert [t for t in targets if not (REPO / t).is_file()] == []


if __name__ == "__main__":
    print(rooms(), end="")
