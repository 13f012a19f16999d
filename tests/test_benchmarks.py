"""The replay benchmark's scaled workspace stays a valid store and catalog (no timing here)."""

from __future__ import annotations

import importlib.util

from harness.catalog import load_catalog
from harness.goldens.sealing import verify

from .conftest import FIXTURES, REPO


def test_scaled_workspace_is_a_verified_store_of_copied_cases(tmp_path, catalog):
    spec = importlib.util.spec_from_file_location("replay_scale", REPO / "benchmarks" / "replay_scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    goldens, fixtures = bench.scaled_workspace(tmp_path, "2.13.0", 3)
    verified, findings = verify(goldens)
    assert not findings and verified == 3 * (len(list((REPO / "serialized" / "2.13.0").rglob("*.*"))) - 1)
    copies = load_catalog(fixtures)
    assert sorted(c.id for c in copies) == sorted(f"{c.id}-x{k}" for k in range(3) for c in load_catalog(FIXTURES))
