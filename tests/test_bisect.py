"""bc-harness bisect: the first release where a golden's result changed."""

from __future__ import annotations

import pytest

from harness.reporting.bisect import Answer, Probe, between, search

from .conftest import run_cli


def rec(verdict, artifact="state_dict", backend="fbgemm", golden="2.4.1", **figures):
    return {"case": "c", "artifact": artifact, "backend": backend, "golden_version": golden, "verdict": verdict,
            "message": figures.pop("message", ""), **figures}


RELEASES = ["2.4.1", "2.5.0", "2.5.1", "2.6.0", "2.7.0", "2.7.1", "2.8.0", "2.9.0", "2.13.0"]


def prober(first_bad: str, unjudged=(), log=None):
    """A fake replay: 'same' before ``first_bad``, 'changed' from it on, nothing on ``unjudged``."""
    def probe(release):
        if log is not None:
            log.append(release)
        if release in unjudged:
            return Probe(release, [rec("skip", message="needs x86")])
        changed = RELEASES.index(release) >= RELEASES.index(first_bad)
        return Probe(release, [rec("drift", max_abs_diff=0.5, mismatched=1, total=6) if changed else rec("pass")])
    return probe


@pytest.mark.parametrize("first_bad", RELEASES[1:])
def test_search_finds_the_first_changed_release_in_log_steps(first_bad):
    log = []
    probe = prober(first_bad, log=log)
    answer = search(RELEASES, probe, probe("2.4.1"), probe("2.13.0"), say=lambda line: None)
    assert (answer.last_good.release, answer.first_bad.release) == (RELEASES[RELEASES.index(first_bad) - 1], first_bad)
    assert len(log) - 2 <= 3  # 7 releases between the ends: at most ceil(log2(8)) replays
    assert answer.unjudged == []


def test_unjudged_releases_are_stepped_over_and_named():
    probe = prober("2.7.0", unjudged={"2.6.0", "2.5.1"})
    answer = search(RELEASES, probe, probe("2.4.1"), probe("2.13.0"), say=lambda line: None)
    assert answer.first_bad.release == "2.7.0" and answer.last_good.release == "2.5.0"
    assert answer.unjudged == ["2.5.1", "2.6.0"]
    assert "could not be judged, so the change is in one of 2.5.1, 2.6.0, 2.7.0" in answer.lines()[0]


def test_answer_shows_the_figures_on_each_side():
    good = Probe("2.4.1", [rec("pass", backend=b) for b in ("fbgemm", "x86")])
    bad = Probe("2.5.0", [rec("drift", backend=b, max_abs_diff=0.0177, mismatched=8, total=16) for b in ("fbgemm", "x86")])
    lines = Answer(good, bad, [], []).lines()
    assert lines[0] == "first bad release: 2.5.0 (last good: 2.4.1)"
    assert "    state_dict on fbgemm/x86: drift max |Δ| 0.0177 8 of 16 elements" in lines
    assert "    state_dict on fbgemm/x86: pass" in lines


def test_a_release_with_an_environment_near_the_middle_is_preferred():
    log = []
    probe = prober("2.5.1", log=log)
    search(RELEASES, probe, probe("2.4.1"), probe("2.13.0"), say=lambda line: None,
           cached=lambda release: release == "2.5.1")
    assert log[2] == "2.5.1"  # the exact middle is 2.7.0; 2.5.1 lies in the central half and is ready
    log.clear()
    search(RELEASES, probe, probe("2.4.1"), probe("2.13.0"), say=lambda line: None,
           cached=lambda release: release == "2.5.0")  # at the edge: not worth a lopsided split
    assert log[2] == "2.7.0"


def test_probe_states():
    assert Probe("1", [rec("pass"), rec("rounding")]).state == "same"
    assert Probe("1", [rec("pass"), rec("load-error", message="no")]).state == "changed"
    assert Probe("1", [rec("skip")]).state == "unjudged"
    assert Probe("1", note="the harness did not replay").state == "unjudged"
    assert Probe("1", note="assumed: the golden was made here").state == "same"


def test_between_takes_the_registry_releases_inside_the_range():
    assert between(["2.0.0", "1.13.1", "2.0.1", "2.1.0", "1.12.0"], "1.13.1", "2.0.1") == ["1.13.1", "2.0.0", "2.0.1"]
    assert between([], "1.13.1", "2.13.0") == ["1.13.1", "2.13.0"]


def test_bisect_on_the_running_torch_names_the_first_bad_release():
    """The committed 1.13.1 golden of the packaged FX model drifts on today's torch; with a
    registry of only those two releases, the answer comes from one real replay, no install."""
    out = run_cli("bc-harness", "bisect", "linear_relu_package_quantization_transforms", "--golden", "1.13.1",
                  "--backend", "fbgemm", env={"BC_HARNESS_RELEASES": "1.13.1,2.13.0"}, check=0).stdout
    assert "0 torch releases between 1.13.1 (good) and 2.13.0 (changed)" in out
    assert "first bad release: 2.13.0 (last good: 1.13.1)" in out
    assert "package on fbgemm: drift max |Δ| 0.0177" in out
    assert "assumed: the golden was made by torch 1.13.1" in out


def test_bisect_picks_the_newest_changed_golden_and_stops_when_nothing_changed():
    out = run_cli("bc-harness", "bisect", "linear", "--backend", "fbgemm",
                  env={"BC_HARNESS_RELEASES": "1.13.1,2.13.0"}, check=0).stdout
    assert "holds on torch 2.13.0 for every golden set older than it: nothing to bisect" in out


@pytest.mark.parametrize("args, message", [
    (["no-such-case"], "no case matches -k no-such-case"),
    (["linear", "--good", "2.13.0", "--golden", "2.13.0"], "nothing to bisect"),
    (["linear_relu_package_quantization_transforms", "--golden", "1.13.1", "--good", "2.13.0"],
     "the good release 2.13.0 is not older than the bad one 2.13.0"),
    (["linear", "--bad", "two"], "--bad 'two' is not a version"),
])
def test_bisect_usage(args, message):
    proc = run_cli("bc-harness", "bisect", *args, env={"BC_HARNESS_RELEASES": "1.13.1,2.13.0"})
    assert message in proc.stdout + proc.stderr


def test_another_environment_runs_this_checkouts_harness(monkeypatch):
    """The harness is not installed in a release's environment: run_harness puts the directory that
    holds this checkout's harness package on its path."""
    import subprocess
    from pathlib import Path

    from harness.making import isolated

    seen = {}
    monkeypatch.setattr(subprocess, "run", lambda command, env, **kw: seen.update(env) or
                        subprocess.CompletedProcess(command, 0))
    isolated.run_harness(Path("python"), "main", ["cases"], "bc-harness cases")
    first = Path(seen["PYTHONPATH"].split(":")[0])
    assert (first / "harness" / "cli" / "__init__.py").is_file(), first


def test_a_library_pinned_environment_replaces_the_paired_release(monkeypatch):
    from harness.making import isolated

    assert isolated.env_dir("2.13.0", ("torchao", "0.17.0")).name.startswith("torch-2.13.0-torchao-0.17.0-py")
    from harness.releases import requirement_name

    assert requirement_name("torchao==0.18.0") == "torchao" and requirement_name("torchvision>=0.2") == "torchvision"


def test_bisect_over_a_stack_library_names_the_first_bad_torchao_release():
    """The 0.17.0 golden of the int8 weight-only recipe (config version 1, 0.17.0's default) on
    torchao 0.18.0 and the same torch: the answer, from one real replay, is 0.18.0."""
    pytest.importorskip("torchao")
    out = run_cli("bc-harness", "bisect", "torchao-mlp-int8-weight-only", "--library", "torchao", "--golden",
                  "2.13.0+torchao.0.17.0", env={"BC_HARNESS_RELEASES_TORCHAO": "0.16.0,0.17.0,0.18.0"},
                  check=0).stdout
    assert "on torchao 0.18.0 (torch 2.13.0), golden 2.13.0+torchao.0.17.0" in out
    assert "0 torchao releases between 0.17.0 (good) and 0.18.0 (changed), each beside the torch it pairs with: none" in out
    assert "first bad release: 0.18.0 (last good: 0.17.0)" in out
    assert "assumed: the golden was made by torchao 0.17.0" in out
    assert "AffineQuantizedTensor" in out or "affine_quantized_tensor" in out


def test_bisect_over_a_library_that_is_no_stacks_is_a_usage_error():
    proc = run_cli("bc-harness", "bisect", "linear", "--library", "numpy")
    assert "--library numpy: not a stack's library" in proc.stdout + proc.stderr
