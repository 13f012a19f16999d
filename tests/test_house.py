"""The house's own rules, read from the code: the layouts keep one declared interface, verdicts
have one home with a meaning each, no module of harness/ outgrows ~400 lines, and its imports
(deferred ones included) form no circle."""

import ast
import inspect
from pathlib import Path

import pytest

from harness.goldens.layout import LAYOUT_MEMBERS, LAYOUTS, Layout
from harness.replaying.results import Result
from harness.verdicts import FAILING, Verdict

HARNESS = Path(__file__).resolve().parent.parent / "harness"
#: the most lines a module may have: "a module past ~400 lines is asking to be split"
MAX_LINES = 420


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_has_every_member_of_the_protocol_with_its_parameters(name):
    layout = LAYOUTS[name]
    assert [m for m in LAYOUT_MEMBERS if not hasattr(layout, m)] == []
    for member in LAYOUT_MEMBERS:
        declared = getattr(Layout, member, None)
        if callable(declared):
            want = [p for p in inspect.signature(declared).parameters if p not in ("self", "cls")]
            have = [p for p in inspect.signature(getattr(layout, member)).parameters if p not in ("self", "cls")]
            assert have == want, f"{name}.{member}"


def test_every_verdict_has_a_meaning_and_results_hold_verdicts():
    assert all(v.meaning for v in Verdict)
    assert {v for v in Verdict if v.failing} == FAILING
    result = Result("c", "scripted", "fbgemm", "2.0.1", "2.13.0", "drift")
    assert result.verdict is Verdict.DRIFT and result.verdict == "drift" and result.failed
    with pytest.raises(ValueError, match="unknown verdict"):
        Result("c", "scripted", "fbgemm", "2.0.1", "2.13.0", "drifted")


def _modules():
    for path in sorted(HARNESS.rglob("*.py")):
        parts = path.relative_to(HARNESS.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def test_no_module_is_over_the_size_limit():
    assert {str(p.relative_to(HARNESS)): n for _, p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES} == {}


def test_no_import_circle_deferred_imports_included():
    modules = dict(_modules())
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                targets.add(node.module)
                targets |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("harness")}
        # a package's own __init__ is not an arrow from its modules
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    state, circle = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circle.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert circle == []
