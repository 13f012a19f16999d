"""Writes through the plugin and the command: an update deletes nothing it was not asked to
rewrite, a write that loses a race replays against the winner's golden, and a golden that is
vouched for but unreadable is replaced with a report line, not a traceback."""

from __future__ import annotations

import json
import textwrap

from harness.making.generate import generate_case
from harness.goldens.sealing import verify
from harness.goldens.store import GoldenStore, sha256
from harness.making.writing import write_goldens


def _manifest(store, version):
    return json.loads((store / version / "manifest.json").read_text())


def test_an_update_restricted_to_one_backend_keeps_every_other_backend(store, catalog, version):
    case = next(c for c in catalog if c.id == "linear")
    before = _manifest(store, version)
    others = {b for b, s in before["cases"]["linear"]["backends"].items() if s == "ok"} - {"fbgemm"}
    assert others, "the session store made linear under more than fbgemm"
    said = []
    write_goldens(GoldenStore(store), version, [generate_case(case, ["fbgemm"])], "test", overwrite=True,
                  say=said.append)
    after = _manifest(store, version)
    assert after["cases"]["linear"]["backends"] == before["cases"]["linear"]["backends"]
    for backend in others:
        name = f"linear/expected.{backend}.pt"
        assert after["files"][name] == before["files"][name]
    assert "REMOVED" not in said[0] and "kept the goldens of backends this run did not make" in said[0]
    assert verify(store)[1] == []


def test_regenerating_over_a_vouched_unreadable_expected_output_reports_it(store, catalog, version):
    case = next(c for c in catalog if c.id == "linear")
    name, junk = "linear/expected.fbgemm.pt", b"PK\x03\x04 not a zip at all"
    (store / version / name).write_bytes(junk)
    manifest = _manifest(store, version)
    manifest["files"][name] = {"sha256": sha256(junk), "size": len(junk)}
    (store / version / "manifest.json").write_text(json.dumps(manifest))
    said = []
    write_goldens(GoldenStore(store), version, [generate_case(case)], "test", overwrite=True, say=said.append)
    assert "old golden unusable" in said[0]
    assert verify(store)[1] == []


RACE = textwrap.dedent('''
    """Plays the other xdist worker: it writes the same golden between this test's check and write."""
    from pathlib import Path

    import harness.making.generate

    real = harness.making.generate.generate_fresh
    raced = []

    def racing(case, backends=None):
        made = real(case, backends)
        if not raced:
            raced.append(case.id)
            from harness.compat import torch_release
            from harness.goldens.store import GoldenStore
            from harness.making.writing import write_goldens

            write_goldens(GoldenStore(Path(__file__).parent / "goldens"), torch_release(), [real(case, backends)],
                          "the other worker", owner="test_user.py::test_linear")
        return made

    harness.making.generate.generate_fresh = racing
''')


def test_a_write_that_loses_the_race_replays_against_the_winner(outside_ci, pytester):
    from ..test_plugin import USER_TESTS

    pytester.makeini("[pytest]\ngolden_dir = goldens\n")
    pytester.makeconftest(RACE)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("--golden-update-new-only", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "GoldenExists" not in result.stdout.str()


def test_pin_on_a_full_disk_says_so_and_leaves_no_manifest(store, version, tmp_path, monkeypatch, capsys):
    import errno

    import harness.goldens.sealing
    from harness.cli import main

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "TestSerialization.test_x.state_dict.pt").write_bytes((store / version / "linear/state_dict.pt").read_bytes())

    def full_disk(path, data, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(harness.goldens.sealing, "atomic_write", full_disk)
    assert main(["pin", str(foreign)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not (foreign / "manifest.json").exists()
