"""The ExecuTorch stack: its release axis, its own backends, its installs, the window report, and
its goldens replayed by the installed runtime."""

from __future__ import annotations

from collections import Counter

import pytest

from harness import stacks
from harness.backends import current, ordered, using
from harness.reporting.window import Cell, table
from harness.stacks.executorch import releases


def test_each_release_runs_beside_the_torch_it_was_built_against():
    assert releases.torch_for("1.5.1", "2.13.0") == "2.13.0"
    assert releases.torch_for("1.4.1", "2.13.0") == "2.13.0"
    assert releases.torch_for("1.3.1", "2.13.0") == "2.12.1"
    assert releases.torch_for("1.3.1", "2.12.0") == "2.12.0"
    assert releases.torch_for("1.0.1", "2.13.0") is None  # pins a torchao no torch release pairs with here
    assert releases.packages("2.13.0")[0] == "executorch==1.5.1"
    assert releases.packages("2.12.1")[0] == "executorch==1.3.1"
    assert releases.packages("2.10.0") == [] and releases.packages("nightly") == []


def test_the_promised_window_is_one_minor_release_on():
    assert releases.promised("1.3.1", "1.3.1") and releases.promised("1.3.1", "1.4.1")
    assert not releases.promised("1.3.1", "1.5.1")
    assert not releases.promised("1.4.1", "1.3.1")  # an older runtime is not promised anything


def test_executorch_installs_alone_after_the_rest_with_the_same_index():
    from harness.releases import installs, pip_args

    steps = installs(pip_args("2.13.0+executorch.1.4.1", index="cpu"))
    assert len(steps) == 2 and not any(a.startswith("executorch") for a in steps[0])
    assert steps[1][:2] == ["--no-deps", "executorch==1.4.1"]
    assert "--index-url" in steps[1] and "flatbuffers>=24" in steps[0]
    assert installs(["torch==2.8.0", "torchao==0.12.0"]) == [["torch==2.8.0", "torchao==0.12.0"]]


def test_one_environment_per_torch_and_library_release_however_it_is_named():
    from harness.making.isolated import env_dir

    assert env_dir("2.13.0+executorch.1.4.1") == env_dir("2.13.0", ("executorch", "1.4.1"))
    assert env_dir("2.12.1", ("executorch", "1.3.1")) == env_dir("2.12.1")  # the pair is no pin
    assert env_dir("2.12.1", ("executorch", "1.2.0")) != env_dir("2.12.1")


def test_a_stacks_backends_are_its_cases_own_and_report_after_torchs(catalog):
    et = next(c for c in catalog if c.flow == "executorch")
    legacy = next(c for c in catalog if c.flow == "eager")
    assert stacks.case_backends(et, None, ["fbgemm", "x86"]) == ["xnnpack", "portable"]
    assert stacks.case_backends(et, ["portable", "fbgemm"], ["fbgemm"]) == ["portable"]
    assert stacks.case_backends(et, ["fbgemm"], ["fbgemm"]) == []
    assert stacks.case_backends(legacy, None, ["fbgemm", "x86"]) == ["fbgemm", "x86"]
    assert ordered(["any", "portable", "onednn", "xnnpack", "zzz"]) == ["onednn", "xnnpack", "portable", "any", "zzz"]


def test_a_stacks_backend_is_current_without_touching_torchs_engine():
    import torch

    engine = torch.backends.quantized.engine
    assert current() is None
    with using("xnnpack"):
        assert current() == "xnnpack" and torch.backends.quantized.engine == engine
        with using("fbgemm"):
            assert current() == "fbgemm" and torch.backends.quantized.engine == "fbgemm"
        assert current() == "xnnpack" and torch.backends.quantized.engine == engine
    assert current() is None


def test_a_runtimes_dequantized_output_is_measured_in_the_goldens_steps():
    import torch

    from harness.catalog import Tolerance
    from harness.compare import compare

    runtime = Tolerance(dequantized=True)
    golden = torch.quantize_per_tensor(torch.linspace(-1, 1, 50), 0.01, 3, torch.qint8)
    same = golden.dequantize()
    assert compare(golden, same, runtime).verdict == "pass"
    nudged = same + 1e-7  # float32 rounding of (q - zero_point) * scale
    assert compare(golden, nudged, runtime).verdict == "pass"
    moved = same.clone()
    moved[7] += 0.02
    diff = compare(golden, moved, runtime)
    assert diff.verdict == "drift" and diff.mismatched == 1 and diff.max_step_diff == pytest.approx(2, rel=1e-5)
    # a float reference against a quantized output: the same measure, in the output's steps
    assert compare(moved, golden, runtime).max_step_diff == pytest.approx(2, rel=1e-5)
    # elsewhere a quantized output that comes out float is a change of kind, as before
    assert "golden is a quantized tensor, obtained a tensor" in compare(golden, same).message
    assert "golden is" in compare(golden, torch.zeros(50, dtype=torch.int64), runtime).message


def test_the_window_table_says_where_each_makers_goldens_hold():
    cells = [Cell("1.3.1", "1.3.1", "xnnpack", "pte", Counter({"pass": 2}), 0.0, None, True),
             Cell("1.3.1", "1.5.1", "xnnpack", "pte", Counter({"pass": 1, "drift": 1}), 1.0, None, False),
             Cell("1.4.1", "1.5.1", "portable", "pte", Counter({"skip": 2}), None, None, True)]
    lines = table(cells)
    assert lines[2] == "| 1.3.1 | 1.3.1 | xnnpack | pte | 2 pass | 0 steps | yes |"
    assert lines[3] == "| 1.3.1 | 1.5.1 | xnnpack | pte | 1 drift, 1 pass | 1 steps | no |"
    assert "- made with 1.3.1: holds on 1.3.1; changes on 1.5.1" in lines
    assert "- made with 1.4.1: holds on none; changes on 1.5.1" in lines  # skips alone hold nothing


def test_the_committed_executorch_goldens_replay_on_the_installed_runtime(catalog):
    pytest.importorskip("executorch")
    from harness.stacks.executorch.compat import problem, version

    if problem():
        pytest.skip(problem())
    from harness.goldens.store import GoldenStore
    from harness.replaying.request import Options
    from harness.replaying.schedule import replay_store
    from tests.test_pte_goldens import ROOT

    cases = [c for c in catalog if c.id in ("et-static-pc-linear", "et-dynamic-linear")]
    options = Options(versions=["2.13.0"], patterns=[c.id for c in cases])
    results = [r for r in replay_store(GoldenStore(ROOT / "serialized"), cases, options)]
    assert {(r.case, r.artifact, r.backend): r.verdict for r in results} == {
        (c.id, k, b): "pass" for c in cases for k in ("export", "pte") for b in ("xnnpack", "portable")}, version()


def test_the_window_replays_each_makers_goldens_on_its_release_and_newer_only(tmp_path):
    """measure() asks each runtime for its replay once and keeps, per result, only goldens its
    release or an older one made (what a newer release wrote is not in an older one's window)."""
    import json

    from harness.reporting.window import measure

    store = tmp_path / "goldens"
    for version, release in (("2.12.1", "1.3.1"), ("2.13.0", "1.5.1")):
        (store / version).mkdir(parents=True)
        entry = {"description": "", "flow": "executorch", "artifacts": [], "backends": {},
                 "made_with": {"executorch": release}}
        (store / version / "manifest.json").write_text(json.dumps(
            {"format": 1, "torch": version, "cases": {"et-x": entry}, "files": {}, "golden_files": 0}))
    (store / ".bc-harness-store").write_text("")

    class Fake:
        def __init__(self):
            self.store, self.asked = store, []

        def say(self, line):
            pass

        def name(self, release):
            return release

        def replayed(self, release, cases, golden=None):
            self.asked.append(release)
            return [{"golden_version": v, "case": "et-x", "backend": "xnnpack", "artifact": "pte",
                     "verdict": "pass" if release != "1.5.1" or v == "2.13.0" else "load-error",
                     "max_step_diff": 0.0, "max_abs_diff": 0.0} for v in ("2.12.1", "2.13.0")], ""

    fake = Fake()
    cells, notes = measure(fake, "executorch", ["et-x"], ["1.5.1", "1.3.1"], releases.promised)
    assert fake.asked == ["1.3.1", "1.5.1"] and notes == {}
    assert [(c.made_with, c.runtime, dict(c.verdicts), c.promised) for c in cells] == [
        ("1.3.1", "1.3.1", {"pass": 1}, True), ("1.3.1", "1.5.1", {"load-error": 1}, False),
        ("1.5.1", "1.5.1", {"pass": 1}, True)]


def test_the_window_command_says_what_it_cannot_measure(tmp_path, capsys):
    from harness.cli import main

    assert main(["window", "nosuch"]) == 2
    assert "window nosuch: not a stack's library" in capsys.readouterr().err
    pytest.importorskip("executorch")
    (tmp_path / ".bc-harness-store").write_text("")
    from tests.test_pte_goldens import ROOT

    assert main(["window", "executorch", "--goldens", str(tmp_path), "--fixtures", str(ROOT / "fixtures")]) == 2
    assert "no golden set records which executorch release made its cases" in capsys.readouterr().err
