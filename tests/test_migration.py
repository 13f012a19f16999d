"""Migration parity: each legacy case against the successors the stacks offer, from the same float model."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from harness import stacks
from harness.catalog import load_catalog
from harness.cli import main
from harness.making.migration import legacy_cases, migrate

from .conftest import REPO

CATALOG = load_catalog(REPO / "fixtures")


def _need(name):
    found = next(s for s in stacks.successors() if s.name == name)
    if found.problem():
        pytest.skip(found.problem())
    return found


def test_a_static_and_a_dynamic_case_are_measured_against_every_successor(tmp_path, capsys):
    for name in ("pt2e-x86", "pt2e-xnnpack", "torchao-int8-dynamic"):
        _need(name)
    out = tmp_path / "rows.json"
    assert main(["migrate", "-k", "ptq-linear", "-k", "dyn-linear-qint8", "--backend", "fbgemm", "--backend", "qnnpack",
                 "-j", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {r["case"] for r in rows} == {"ptq-linear", "ptq-linear-ref", "dyn-linear-qint8"}
    assert {(r["case"], r["mode"]) for r in rows} == {("ptq-linear", "static-int8"), ("ptq-linear-ref", "static-int8"),
                                                     ("dyn-linear-qint8", "dynamic-int8")}
    for r in rows:  # every pair measured: a Linear model has a successor of each kind, and it is close
        assert r["note"] == "" and r["backend"] in ("fbgemm", "qnnpack"), r
        assert 0 < r["steps"] < 4 and r["legacy_error"] < 4 and r["successor_error"] < 4, r
    assert len(rows) == 3 * 3 * 2
    shown = capsys.readouterr().out
    assert "legacy-successor steps, median (max)" in shown and "3 legacy cases: 3 with a successor measured" in shown


def test_a_model_no_successor_quantizes_says_why_instead_of_a_distance():
    case = next(c for c in CATALOG if c.id == "dyn-linear-float16")
    rows = migrate([case], REPO / "fixtures", ["fbgemm"])
    assert {r.mode for r in rows} == {"dynamic-float16"} and all(r.steps is None for r in rows)
    assert all("not dynamic-float16's" in r.note for r in rows)
    bare = next(c for c in CATALOG if c.id == "linear_dynamic-qint8")  # PyTorch's suite builds the quantized module
    [row] = migrate([bare], REPO / "fixtures", ["fbgemm"])
    assert row.note.startswith("no float model")


def test_a_quantizer_that_annotates_nothing_is_no_successor():
    import torch

    with pytest.raises(ValueError, match="annotates none"):
        stacks.Successor.check_quantized(torch.fx.symbolic_trace(torch.nn.ReLU()))


CRASHING = textwrap.dedent('''
    import os, signal
    import torch
    from harness.catalog import Case, FloatInput
    from harness.compat import ao

    def floating():
        return torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()

    def build():
        if torch.backends.quantized.engine == "qnnpack":
            os.kill(os.getpid(), signal.SIGSEGV)
        return ao().quantize_dynamic(floating(), {torch.nn.Linear})

    CASES = [Case("fragile", build, FloatInput((2, 4)), ("state_dict",), flow="dynamic", float_model=floating)]
''')


def test_a_legacy_model_that_crashes_one_backend_is_a_note_and_the_rest_is_measured(tmp_path):
    _need("pt2e-x86")
    (tmp_path / "fragile.py").write_text(CRASHING)
    rows = migrate(load_catalog(tmp_path), tmp_path, ["fbgemm", "qnnpack"])
    crashed = [r for r in rows if r.backend == "qnnpack"]
    assert crashed and all(r.note.startswith("crash: SIGSEGV") and r.steps is None for r in crashed)
    assert all(r.steps is not None for r in rows if r.backend == "fbgemm" and r.successor == "pt2e-x86")


def test_the_manual_lists_every_legacy_case_of_the_catalog():
    """docs/migration.md is `bc-harness migrate --markdown`'s output: each legacy case has a line per
    successor, with a distance or the reason there is none."""
    text = (REPO / "docs" / "migration.md").read_text()
    flows = set(stacks.flow_names())
    listed = {case for case, flow in re.findall(r"^\| `([^`]+)` \| (\w+) \|", text, re.M) if flow in flows}
    assert {c.id for c in legacy_cases(CATALOG)} == listed
    assert re.search(r"\d+ legacy cases: \d+ with a successor measured", text)


def test_no_legacy_case_selected_is_a_usage_error(capsys):
    assert main(["migrate", "-k", "torchao-mlp-int8-dynamic"]) == 2
    assert "no case of a legacy flow" in capsys.readouterr().err
