"""Replay in-process: the round trip, the committed goldens, and every kind of bad input."""

import json

import pytest
import torch

from harness.backends import supported_backends
from harness.goldens.safeload import save_bytes
from harness.replaying.request import Options
from harness.replaying.schedule import replay_store
from harness.goldens.store import GoldenStore, sha256

from .conftest import REPO, SLICE


def replay(root, catalog, **options):
    return list(replay_store(GoldenStore(root), catalog, Options(**options)))


def keyed(results):
    return {(r.case, r.artifact, r.backend): r for r in results}


def test_round_trip_passes_every_case_artifact_and_backend(store, catalog, version):
    results = replay(store, [c for c in catalog if c.id in SLICE], )
    assert results and all(r.golden_version == version == r.runtime_version for r in results)
    assert {r.verdict for r in results} <= {"pass", "skip"}
    by = keyed(results)
    backends = supported_backends()
    for backend in backends:
        assert by[("linear", "scripted", backend)].verdict == "pass"
    assert by[("per_tensor_observer", "state_dict", "any")].verdict == "pass"
    assert by[("linear_relu_package_quantization_transforms", "package", "fbgemm")].verdict == "pass"
    assert by[("lstm", "state_dict", "fbgemm")].total == 4 * 4 * 7 + 2 * 4 * 7
    # fp16 dynamic linear has no qnnpack kernel: a skip with the reason, never silence
    if "qnnpack" in backends:
        skipped = by[("linear_dynamic-float16", "traced", "qnnpack")]
        assert skipped.verdict == "skip" and "not supported by QNNPACK" in skipped.message


def test_cross_backend_difference_is_measured_not_hidden(store, catalog):
    if "qnnpack" not in supported_backends():
        pytest.skip("this torch has no qnnpack")
    by = keyed(replay(store, catalog))
    r = by[("linear_dynamic-qint8", "state_dict", "qnnpack")]
    assert r.verdict == "pass"  # qnnpack against its own golden
    assert r.vs_fbgemm_mismatched == 1 and r.vs_fbgemm_max_abs_diff > 0  # but not fbgemm's
    assert by[("linear_dynamic-qint8", "state_dict", "fbgemm")].vs_fbgemm_max_abs_diff is None


@pytest.mark.slow
def test_committed_goldens_replay_cleanly(catalog):
    """The goldens in serialized/ made with this torch pass on every backend (or crash as a
    known-drifts entry says they do on this CPU: replayed crash-safe, as the command does).
    Nightly only: the main job (.ci/run) is this replay, of every committed set."""
    from harness.compat import torch_release

    from .conftest import FIXTURES

    if not (REPO / "serialized" / torch_release()).is_dir():
        pytest.skip(f"no committed goldens for torch {torch_release()}")
    results = list(replay_store(GoldenStore(REPO / "serialized"), catalog, Options(versions=[torch_release()]),
                                fixtures=FIXTURES))
    bad = [(r.case, r.artifact, r.backend, r.verdict, r.message) for r in results if r.failed]
    assert not bad
    skips = {(r.case, r.artifact, r.backend): r.message for r in results if r.verdict == "skip"}
    reasons = ("not supported by", "cannot make it", "cannot run it", "not reproducible", "recorded no",
               "needs torchvision, which is not installed", "could not make it")
    assert skips and all(any(why in m for why in reasons) for m in skips.values()), skips
    assert len({r.case for r in results}) == len(catalog)


def _manifest(root, version):
    path = root / version / "manifest.json"
    return path, json.loads(path.read_text())


def _rewrite(root, version, name, data):
    """Replace a golden file and vouch for it in the manifest: bytes that verify but do not load."""
    (root / version / name).write_bytes(data)
    path, manifest = _manifest(root, version)
    manifest["files"][name] = {"sha256": sha256(data), "size": len(data)}
    path.write_text(json.dumps(manifest))


def _flip_middle_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {
    "missing": (lambda root, v: (root / v / "linear/scripted.pt").unlink(), "linear", "scripted", "missing"),
    "zero-length": (lambda root, v: (root / v / "linear/traced.pt").write_bytes(b""), "linear", "traced", "corrupt"),
    "truncated": (lambda root, v: (root / v / "lstm/state_dict.pt").write_bytes(
        (root / v / "lstm/state_dict.pt").read_bytes()[:200]), "lstm", "state_dict", "corrupt"),
    "bit-flip": (lambda root, v: _flip_middle_bit(root / v / "conv2d_graph/scripted.pt"),
                 "conv2d_graph", "scripted", "corrupt"),
    # vouched for and a clean torch.save file, but not this model's state: torch refuses it
    "unloadable": (lambda root, v: _rewrite(root, v, "linear/state_dict.pt", save_bytes({"not_a_key": 1})),
                   "linear", "state_dict", "load-error"),
    # vouched for, but not the format of its kind: vetting refuses it before any loader sees it
    "not-a-torch-file": (lambda root, v: _rewrite(root, v, "linear/state_dict.pt", b"not a torch file"),
                         "linear", "state_dict", "corrupt"),
    "unloadable-script": (lambda root, v: _rewrite(root, v, "conv2d_graph/traced.pt", b"PK\x03\x04junk"),
                          "conv2d_graph", "traced", "corrupt"),
    "unloadable-export": (lambda root, v: _rewrite(root, v, "pt2e-ptq-linear/export.pt2", b"PK\x03\x04junk"),
                          "pt2e-ptq-linear", "export", "corrupt"),
    "bit-flip-lite": (lambda root, v: _flip_middle_bit(root / v / "ondevice-linear/lite.ptl"),
                      "ondevice-linear", "lite", "corrupt"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_golden_is_its_results_verdict_and_the_run_goes_on(store, catalog, version, damage):
    harm, case, artifact, verdict = DAMAGE[damage]
    harm(store, version)
    results = replay(store, [c for c in catalog if c.id in SLICE])
    hit = [r for r in results if (r.case, r.artifact) == (case, artifact) and r.backend != "any"]
    assert hit and {r.verdict for r in hit} <= {verdict, "skip"} and verdict in {r.verdict for r in hit}
    assert all("\n" not in r.message and r.message for r in hit)
    others = [r for r in results if (r.case, r.artifact) != (case, artifact)]
    assert {r.verdict for r in others} <= {"pass", "skip"}


def test_manifest_entry_edited_is_corrupt(store, catalog, version):
    path, manifest = _manifest(store, version)
    manifest["files"]["linear/scripted.pt"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    by = keyed(replay(store, [c for c in catalog if c.id == "linear"]))
    assert by[("linear", "scripted", "fbgemm")].verdict == "corrupt"
    assert "does not match its manifest entry" in by[("linear", "scripted", "fbgemm")].message
    assert by[("linear", "traced", "fbgemm")].verdict == "pass"


def test_damaged_input_or_expected_output(store, catalog, version):
    _flip_middle_bit(store / version / "linear/input.pt")
    (store / version / "linear_dynamic-qint8/expected.x86.pt").unlink()
    by = keyed(replay(store, [c for c in catalog if c.id in ("linear", "linear_dynamic-qint8")]))
    assert all(r.verdict == "corrupt" and r.message.startswith("input:") for k, r in by.items() if k[0] == "linear")
    if "x86" in supported_backends():
        assert by[("linear_dynamic-qint8", "scripted", "x86")].verdict == "missing"
        assert by[("linear_dynamic-qint8", "scripted", "fbgemm")].verdict == "pass"


@pytest.mark.parametrize("how", ["deleted", "invalid-json"])
def test_manifest_deleted_or_invalid(store, catalog, version, how):
    path = store / version / "manifest.json"
    path.unlink() if how == "deleted" else path.write_text("{oops")
    results = replay(store, catalog)
    assert len(results) == 1 and results[0].verdict == "corrupt"
    assert "manifest.json" in results[0].message


def test_numeric_drift_is_reported_in_steps(store, catalog, version):
    name = "linear/expected.fbgemm.pt"
    golden = torch.load(store / version / name, weights_only=True)
    shifted = torch._make_per_tensor_quantized_tensor(
        golden.int_repr() + 3, golden.q_scale(), golden.q_zero_point())
    _rewrite(store, version, name, save_bytes(shifted))
    by = keyed(replay(store, [c for c in catalog if c.id == "linear"]))
    r = by[("linear", "state_dict", "fbgemm")]
    assert r.verdict == "drift" and r.max_step_diff == 3 and r.mismatched == 1 and r.total == 1
    assert "up to 3 steps" in r.message
    assert by[("linear", "state_dict", "x86")].verdict == "pass"  # x86 has its own golden


def test_case_missing_from_current_goldens_is_missing(store, catalog, version):
    path, manifest = _manifest(store, version)
    del manifest["cases"]["linear"]
    path.write_text(json.dumps(manifest))
    by = keyed(replay(store, [c for c in catalog if c.id == "linear"]))
    r = by[("linear", "state_dict", "fbgemm")]
    assert r.verdict == "missing" and "regenerate-goldens -k linear" in r.message


def test_backend_selection(store, catalog):
    results = replay(store, [c for c in catalog if c.id in SLICE], backends=["fbgemm"])
    assert {r.backend for r in results} == {"fbgemm", "any"}


def test_goldens_of_newer_torch_are_forward_compatibility_and_never_fail(store, catalog, version):
    import shutil

    shutil.copytree(store / version, store / "99.0.0")
    path, manifest = _manifest(store, "99.0.0")
    manifest["torch"] = "99.0.0"  # the set says it is from the future, as one made there would
    path.write_text(json.dumps(manifest))
    (store / "99.0.0" / "linear" / "traced.pt").write_bytes(b"")
    results = replay(store, [c for c in catalog if c.id in SLICE])
    newer = [r for r in results if r.golden_version == "99.0.0"]
    assert newer and all(r.forward for r in newer)
    broken = [r for r in newer if (r.case, r.artifact) == ("linear", "traced")]
    assert {r.verdict for r in broken} == {"corrupt"} and not any(r.failed for r in broken)
    assert not any(r.forward for r in results if r.golden_version == version)
    assert {r.golden_version for r in replay(store, catalog, forward=False)} == {version}


def test_unsafe_pickle_is_refused_without_running_it(store, catalog, version, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    _rewrite(store, version, "linear/state_dict.pt", save_bytes({"x": Payload()}))
    by = keyed(replay(store, [c for c in catalog if c.id == "linear"]))
    refused = by[("linear", "state_dict", "fbgemm")]
    assert refused.verdict == "corrupt" and "unsafe" in refused.message and "io.open" in refused.message
    assert not marker.exists()


def test_manifest_records_the_machine_and_results_say_when_it_differs(store, catalog, version):
    """Same fingerprint: no machine on the results. Another CPU model: every compared result says so,
    and a drift names what changed (a likely cause). Each case records its own machine: a set
    grows case by case, and the set's header (the last writer's) does not speak for the others."""
    from harness import machine

    path, manifest = _manifest(store, version)
    assert manifest["fingerprint"] == machine.current() == manifest["cases"]["linear"]["machine"]
    linear = [c for c in catalog if c.id == "linear"]
    assert all(r.golden_machine is None and r.runtime_machine is None for r in replay(store, linear))
    manifest["fingerprint"]["cpu_model"] = "The Last Writer's CPU"
    manifest["cases"]["linear"]["machine"]["cpu_model"] = "Some Other CPU 9000"
    manifest["cases"]["linear"]["machine"]["isa"] = ["avx", "avx2", "fma"]
    path.write_text(json.dumps(manifest))
    name = "linear/expected.fbgemm.pt"
    golden = torch.load(store / version / name, weights_only=True)
    shifted = torch._make_per_tensor_quantized_tensor(golden.int_repr() + 1, golden.q_scale(), golden.q_zero_point())
    _rewrite(store, version, name, save_bytes(shifted))
    by = keyed(replay(store, linear))
    r = by[("linear", "traced", "fbgemm")]
    assert r.verdict == "drift" and "golden made on another machine: CPU Some Other CPU 9000 -> " in r.message
    assert r.golden_machine.startswith(f"{machine.current()['cpu_vendor']} Some Other CPU 9000;")
    assert r.runtime_machine == machine.describe(machine.current())
    passing = by[("linear", "traced", "x86")]
    assert passing.verdict == "pass" and passing.message == "" and passing.golden_machine == r.golden_machine


def _mutate(store, version, name, change):
    golden = torch.load(store / version / name, weights_only=True)
    _rewrite(store, version, name, save_bytes(change(golden)))


def _lstm_out_moved(by):
    """The LSTM golden with one element of its output moved by ``by(out)``."""
    def change(golden):
        out, (h, c) = golden
        out = out.clone()
        out.view(-1)[5] += by(out)
        return out, (h, c)
    return change


def test_float_rounding_is_shown_not_failing_and_exact_fails_it(store, catalog, version, tmp_path):
    from harness.compare import ulp_of_largest
    from harness.replaying.results import summary

    from .conftest import run_cli

    _mutate(store, version, "lstm/expected.fbgemm.pt", _lstm_out_moved(lambda out: 2 * ulp_of_largest(out)))
    lstm = [c for c in catalog if c.id == "lstm"]
    r = keyed(replay(store, lstm))[("lstm", "state_dict", "fbgemm")]
    assert r.verdict == "rounding" and not r.failed
    assert r.max_ulp_diff == 2 and r.mismatched == 1 and r.total == 4 * 4 * 7 + 2 * 4 * 7
    assert "differ by float rounding, at most 2 ulps" in r.message
    assert "3 rounding (at most 2 ulps)" in summary([x for x in replay(store, lstm) if x.backend == "fbgemm"])
    exact = keyed(replay(store, lstm, rounding_ulps=0))[("lstm", "state_dict", "fbgemm")]
    assert exact.verdict == "drift" and exact.failed and "beyond the rounding bound of 0" in exact.message
    # as a user runs it: shown, exit 0; --exact exits 1 ('[l]stm' is a glob: exactly the lstm case)
    out = run_cli("bc-harness", "replay", "--goldens", store, "-k", "[l]stm", "--backend", "fbgemm", check=0)
    assert "Float rounding: 3 results within the bound, at most 2 ulps (not failing" in out.stdout
    out = run_cli("bc-harness", "replay", "--goldens", store, "-k", "[l]stm", "--backend", "fbgemm", "-v", check=0)
    assert "rounding 2ulp" in out.stdout and "Float rounding, shown and not failing" in out.stdout
    assert "3 results in 1 case, at most 2 ulps" in out.stdout
    run_cli("bc-harness", "replay", "--goldens", store, "-k", "[l]stm", "--backend", "fbgemm", "--exact", check=1)
    looser = run_cli("bc-harness", "replay", "--goldens", store, "-k", "[l]stm", "--backend", "fbgemm",
                     "--rounding-ulps", "1", "-q", check=1)
    assert "beyond the rounding bound of 1" in looser.stdout


def _one_step(golden):
    return torch._make_per_tensor_quantized_tensor(golden.int_repr() ^ 1, golden.q_scale(), golden.q_zero_point())


def _one_ulp_of_scale(golden):
    scale = torch.nextafter(torch.tensor(golden.q_scale(), dtype=torch.float32), torch.tensor(1.0)).item()
    return torch._make_per_tensor_quantized_tensor(golden.int_repr(), scale, golden.q_zero_point())


@pytest.mark.parametrize("case, name, change, expect", [
    ("linear", "linear/expected.fbgemm.pt", _one_step, "up to 1 steps"),
    ("linear", "linear/expected.fbgemm.pt", _one_ulp_of_scale, "qparams changed: scale"),
    ("lstm", "lstm/expected.fbgemm.pt", _lstm_out_moved(lambda out: 1e-4 * out.abs().max().item()),
     "beyond the rounding bound of 16"),
], ids=["quantized-one-step", "qparam-one-ulp", "float-1e-4-relative"])
def test_mutated_goldens_still_fail_the_run(store, catalog, version, case, name, change, expect):
    """No quantized tolerance was loosened, and a float change beyond rounding is a drift."""
    from .conftest import run_cli

    _mutate(store, version, name, change)
    r = keyed(replay(store, [c for c in catalog if c.id == case]))[(case, "scripted", "fbgemm")]
    assert r.verdict == "drift" and r.failed and expect in r.message
    out = run_cli("bc-harness", "replay", "--goldens", store, "-k", f"[{case[0]}]{case[1:]}", "--backend", "fbgemm",
                  "-q", check=1)
    assert out.stdout.rstrip().splitlines()[-1].startswith("FAILED") and "missing" not in out.stdout


def test_known_drift_keeps_its_verdict_and_figures_but_does_not_fail(store, catalog, version):
    from harness.goldens.known import KnownDriftError, load
    from harness.replaying.results import summary

    name = "linear/expected.fbgemm.pt"
    golden = torch.load(store / version / name, weights_only=True)
    shifted = torch._make_per_tensor_quantized_tensor(golden.int_repr() + 2, golden.q_scale(), golden.q_zero_point())
    _rewrite(store, version, name, save_bytes(shifted))
    entry = f'[[drift]]\ngolden = "{version}"\ncase = "lin*"\nbackend = "fbgemm"\nartifacts = ["state_dict", "traced"]\n'
    (store / "known-drifts.toml").write_text(entry + 'max_step_diff = 2\nreason = "looked at"\n')
    by = keyed(replay(store, [c for c in catalog if c.id == "linear"]))
    covered = by[("linear", "state_dict", "fbgemm")]
    assert covered.verdict == "drift" and covered.known == "looked at" and not covered.failed
    assert covered.max_step_diff == 2
    assert by[("linear", "scripted", "fbgemm")].failed  # not listed: still fails
    assert "drift (2 known)" in summary(list(by.values()))
    (store / "known-drifts.toml").write_text(entry + 'max_step_diff = 1\nreason = "looked at"\n')
    assert keyed(replay(store, [c for c in catalog if c.id == "linear"]))[("linear", "state_dict", "fbgemm")].failed
    (store / "known-drifts.toml").write_text(entry + 'reason = "no bound"\n')
    with pytest.raises(KnownDriftError, match="needs max_abs_diff, max_step_diff or incomparable"):
        load(store)


def test_golden_count_guard_reports_what_the_manifest_promised(store, catalog, version):
    """A case dropped from the catalog, or an artifact dropped from a case, is missing, not silent."""
    from dataclasses import replace

    slice_ = [c for c in catalog if c.id in SLICE]
    without_linear = [c for c in slice_ if c.id != "linear"]
    by = keyed(replay(store, without_linear))
    lost = by[("linear", "scripted", "fbgemm")]
    assert lost.verdict == "missing" and "no longer has case 'linear'" in lost.message and lost.failed
    assert len([r for r in by.values() if r.case == "linear"]) == 3 * len(supported_backends())
    # -k that deselects it is not a loss
    assert not [r for r in replay(store, without_linear, patterns=["lstm"]) if r.case == "linear"]
    # an artifact kind dropped from a case
    trimmed = [replace(c, artifacts=("state_dict", "scripted")) if c.id == "lstm" else c for c in slice_]
    by = keyed(replay(store, trimmed, backends=["fbgemm"]))
    assert by[("lstm", "traced", "fbgemm")].verdict == "missing"
    assert "no longer has the traced artifact" in by[("lstm", "traced", "fbgemm")].message
    assert not [r for r in by.values() if r.backend not in ("fbgemm", "any")]
    # and the intact catalog keeps every promise
    assert not [r for r in replay(store, slice_) if "promises" in r.message]


def test_known_load_error_matches_its_message(store, catalog, version):
    _rewrite(store, version, "linear/state_dict.pt", save_bytes({"not_a_key": 1}))
    entry = f'[[load-error]]\ngolden = "{version}"\ncase = "linear"\n'
    (store / "known-drifts.toml").write_text(entry + 'message = "KeyError"\nreason = "examined"\n')
    r = keyed(replay(store, [c for c in catalog if c.id == "linear"]))[("linear", "state_dict", "fbgemm")]
    assert r.verdict == "load-error" and r.known == "examined" and not r.failed
    (store / "known-drifts.toml").write_text(entry + 'message = "other text"\nreason = "x"\n')
    assert keyed(replay(store, [c for c in catalog if c.id == "linear"]))[("linear", "state_dict", "fbgemm")].failed
