"""The command line in real subprocesses: regenerate-goldens and bc-harness replay."""

import json
from pathlib import Path

import pytest

from .conftest import FIXTURES, by_key, records, run_cli


def test_regenerate_then_replay_round_trip(tmp_path, version):
    golden = tmp_path / "g"
    out = run_cli("regenerate-goldens", "--goldens", golden, "-k", "conv2d_nobias_graph_v3", "-k", "per_tensor*",
                  check=0)
    assert "conv2d_nobias_graph_v3" in out.stdout and "per_tensor_observer" in out.stdout
    manifest = json.loads((golden / version / "manifest.json").read_text())
    assert set(manifest["cases"]) == {"conv2d_nobias_graph_v3", "per_tensor_observer"}
    for key in ("torch", "python", "platform", "cpu_capability", "avx512_vnni", "harness", "created", "command"):
        assert key in manifest, key
    assert manifest["command"].startswith("regenerate-goldens --goldens")
    assert all(len(e["sha256"]) == 64 for e in manifest["files"].values())

    report = tmp_path / "not" / "yet" / "r.json"  # parents are created
    rep = run_cli("bc-harness", "replay", "--goldens", golden, "-k", "conv2d_nobias_graph_v3", "-k", "per_tensor*",
                  "--json", report, check=0)
    assert "OK:" in rep.stdout and "pass" in rep.stdout
    recs = records(report)
    assert recs and {r["verdict"] for r in recs} == {"pass"}
    needed = {"case", "artifact", "backend", "golden_version", "runtime_version", "verdict", "max_abs_diff",
              "max_step_diff", "mismatched", "total", "message"}
    assert needed <= set(recs[0])
    graph = by_key(recs)[("conv2d_nobias_graph_v3", "scripted", "fbgemm")]
    assert graph["max_abs_diff"] == 0 and graph["max_step_diff"] is None  # quantize_jit dequantizes its output
    assert {r["case"] for r in recs} == {"conv2d_nobias_graph_v3", "per_tensor_observer"}
    # the running torch's own golden set lacks the other cases: they are missing, with the fix
    whole = run_cli("bc-harness", "replay", "--goldens", golden, "-q", check=1)
    assert "missing" in whole.stdout and "regenerate-goldens -k linear" in whole.stdout


def test_regeneration_refuses_to_overwrite_and_force_reports_changes(tmp_path, version):
    golden = tmp_path / "g"
    run_cli("regenerate-goldens", "--goldens", golden, "-k", "linear_dynamic-qint8", "-k", "conv2d_relu", check=0)
    snapshot = {p: p.read_bytes() for p in (golden / version).rglob("*") if p.is_file()}

    refused = run_cli("regenerate-goldens", "--goldens", golden, "-k", "conv2d_relu", check=1)
    assert "refusing to overwrite" in refused.stderr and "--force" in refused.stderr
    assert {p: p.read_bytes() for p in snapshot} == snapshot

    # Make the old fbgemm golden of conv2d_relu differ by 2 steps in one element.
    import torch

    from harness.goldens.safeload import save_bytes
    from harness.goldens.store import sha256

    name = "conv2d_relu/expected.fbgemm.pt"
    old = torch.load(golden / version / name, weights_only=True)
    ints = old.int_repr().contiguous().reshape(-1).clone()
    ints[5] += 2
    ints = ints.reshape(old.shape)
    data = save_bytes(torch._make_per_tensor_quantized_tensor(ints, old.q_scale(), old.q_zero_point()))
    (golden / version / name).write_bytes(data)
    manifest_path = golden / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name] = {"sha256": sha256(data), "size": len(data)}
    manifest_path.write_text(json.dumps(manifest))

    forced = run_cli("regenerate-goldens", "--goldens", golden, "-k", "conv2d_relu", "--force", check=0)
    lines = forced.stdout.splitlines()
    changed = [l for l in lines if l.startswith("conv2d_relu") and "fbgemm" in l]
    assert changed and "CHANGED 2 steps" in changed[0] and "1 of 48 elements" in changed[0]
    assert any("x86" in l and "identical" in l for l in lines)
    assert forced.stdout.index("numeric changes") < forced.stdout.index("wrote")
    # the untouched case is kept, the forced one is fresh and verifies again
    replay = run_cli("bc-harness", "replay", "--goldens", golden, "-k", "linear_dynamic-qint8", "-k", "conv2d_relu",
                     check=0)
    assert "OK:" in replay.stdout


def test_replay_reports_failures_with_exit_1_and_no_traceback(tmp_path, store, version):
    (store / version / "linear/traced.pt").write_bytes(b"")
    (store / version / "lstm/scripted.pt").unlink()
    report = tmp_path / "r.json"
    out = run_cli("bc-harness", "replay", "--goldens", store, "-k", "linear", "-k", "lstm", "--json", report, check=1)
    assert "Traceback" not in out.stdout + out.stderr
    assert "FAILED:" in out.stdout and "corrupt" in out.stdout and "missing" in out.stdout
    recs = by_key(records(report))
    assert recs[("linear", "traced", "fbgemm")]["verdict"] == "corrupt"
    assert recs[("lstm", "scripted", "fbgemm")]["verdict"] == "missing"
    assert recs[("linear", "scripted", "fbgemm")]["verdict"] == "pass"


def test_verbose_prints_the_traceback_of_a_load_error(store, version):
    import json as _json

    from harness.goldens.safeload import save_bytes
    from harness.goldens.store import sha256

    data = save_bytes({"not_a_key_of_the_model": 1})  # a clean torch.save file that load_state_dict refuses
    (store / version / "linear/state_dict.pt").write_bytes(data)
    path = store / version / "manifest.json"
    manifest = _json.loads(path.read_text())
    manifest["files"]["linear/state_dict.pt"] = {"sha256": sha256(data), "size": len(data)}
    path.write_text(_json.dumps(manifest))
    quiet = run_cli("bc-harness", "replay", "--goldens", store, "-k", "linear", "--backend", "fbgemm", check=1)
    assert "Traceback" not in quiet.stdout + quiet.stderr and "load-error" in quiet.stdout
    loud = run_cli("bc-harness", "replay", "--goldens", store, "-k", "linear", "--backend", "fbgemm",
                   "--verbose", check=1, process=True)  # the worker's traceback, on the command's stderr
    assert "Traceback" in loud.stderr


@pytest.mark.parametrize("args, says", [
    (["replay", "--backend", "tpu"], "--backend 'tpu' is not one of"),
    (["replay", "-k", "no-such-case"], "no case matches"),
    (["replay", "--layout", "pytorch"], "needs the directory"),
    (["replay", "--goldens", "/nonexistent/goldens"], "does not exist"),
    (["replay", "--fixtures", "/nonexistent/fixtures"], "does not exist"),
    (["replay", "--no-such-flag"], "unrecognized arguments"),
    (["replay", "--layout", "pytorch", "/nonexistent/dir"], "does not exist"),
    (["replay", "--layout", "pytorch", "--goldens", "serialized", "fixtures"], "--goldens and --layout pytorch conflict"),
    (["replay", "--layout", "pytorch", "--no-forward", "fixtures"], "--no-forward and --layout pytorch conflict"),
    (["replay", "--goldens", "serialized", "serialized"], "either DIR or --goldens"),
    (["replay", "--golden", "3.0.0", "-k", "linear"], "has no golden set of torch 3.0.0"),
    (["replay", "--layout", "pytorch", "--golden", "2.13.0", "fixtures"], "--golden and --layout pytorch conflict"),
    (["report", "fixtures", "--md", "x.md"], "no replay-*.json or install-*.json in fixtures"),
    (["replay", "--layout", "tpu"], "invalid choice: 'tpu'"),
    (["report", "a.json"], "no such results file"),
    (["report", "README.md", "--html", "x", "--md", "./x"], "--html and --md conflict"),
    (["verify", "README.md"], "is not a directory"),
    (["pin", "/nonexistent/dir"], "does not exist"),
])
def test_usage_errors_exit_2_with_one_clear_line(args, says):
    out = run_cli("bc-harness", *args, check=2)
    assert says in out.stderr and "Traceback" not in out.stderr
    assert len([l for l in out.stderr.splitlines() if "error" in l]) == 1


def test_golden_directory_comes_from_pyproject_of_the_current_project(tmp_path, generated_store):
    import shutil

    project = tmp_path / "proj"
    shutil.copytree(generated_store, project / "golden-data")
    shutil.copytree(__import__("tests.conftest").conftest.FIXTURES, project / "cases")
    (project / "pyproject.toml").write_text('[tool.bc-harness]\ngoldens = "golden-data"\nfixtures = "cases"\n')
    (project / "sub").mkdir()
    out = run_cli("bc-harness", "replay", "-v", "-k", "linear_relu_package*", cwd=project / "sub", check=0)
    assert "linear_relu_package_quantization_transforms" in out.stdout and "OK:" in out.stdout


def test_cases_lists_the_catalog():
    out = run_cli("bc-harness", "cases", check=0)
    assert "linear_dynamic-float16" in out.stdout and "test_linear_relu_package_quantization_transforms" in out.stdout


def test_regeneration_refuses_a_golden_set_whose_manifest_is_unusable(store, version):
    (store / version / "manifest.json").write_text("{broken")
    before = {p: p.read_bytes() for p in (store / version).rglob("*") if p.is_file()}
    out = run_cli("regenerate-goldens", "--goldens", store, "-k", "per_tensor", "--force", check=1)
    assert "cannot be updated safely" in out.stderr and "Traceback" not in out.stderr
    assert {p: p.read_bytes() for p in before} == before


def test_forced_regeneration_of_unchanged_cases_keeps_data_bytes(tmp_path, version):
    golden = tmp_path / "g"
    run_cli("regenerate-goldens", "--goldens", golden, "-k", "conv2d_relu", "-k", "per_channel*", check=0)
    before = {p.relative_to(golden): p.read_bytes() for p in golden.rglob("*") if p.is_file()
              and p.name != ".bc-harness.lock"}
    out = run_cli("regenerate-goldens", "--goldens", golden, "-k", "conv2d_relu", "-k", "per_channel*",
                  "--force", check=0)
    assert "numeric changes versus the old goldens: 0 of" in out.stdout
    assert "nothing changed: every file and manifest entry is as it was; nothing written" in out.stdout
    after = {p.relative_to(golden): p.read_bytes() for p in golden.rglob("*") if p.is_file()
             and p.name != ".bc-harness.lock"}
    assert after == before  # every golden (legacy state_dicts included) and the manifest: git sees no change


@pytest.mark.slow  # it builds a virtual environment with torch in it: about a minute
def test_regenerate_with_another_torch_runs_in_a_cached_isolated_environment(tmp_path, monkeypatch, version):
    """--torch VERSION builds a venv with that torch (here the local 2.13.0 build, no download)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    golden = tmp_path / "g"
    first = run_cli("regenerate-goldens", "--torch", version, "--goldens", golden, "-k", "per_tensor", check=0)
    assert f"[torch {version}] creating environment" in first.stdout
    assert f"[torch {version}] environment ready: torch {version}" in first.stdout
    assert "per_tensor_observer" in first.stdout
    manifest = json.loads((golden / version / "manifest.json").read_text())
    assert manifest["command"].startswith(f"regenerate-goldens --torch {version}")
    assert set(manifest["cases"]) == {"per_tensor_observer"}
    again = run_cli("regenerate-goldens", "--torch", version, "--goldens", golden, "-k", "per_channel", check=0)
    assert "using cached environment" in again.stdout and "creating" not in again.stdout
    bad = run_cli("regenerate-goldens", "--torch", "not-a-version", check=2)
    assert "is not a version" in bad.stderr


def test_replay_prints_forward_compatibility_apart_and_it_never_fails(store, version):
    import shutil

    shutil.copytree(store / version, store / "99.0.0")
    manifest = json.loads((store / "99.0.0" / "manifest.json").read_text())
    manifest["torch"] = "99.0.0"  # a set that says it is from the future, as one made there would
    (store / "99.0.0" / "manifest.json").write_text(json.dumps(manifest))
    (store / "99.0.0" / "linear_dynamic-qint8" / "scripted.pt").unlink()
    out = run_cli("bc-harness", "replay", "--goldens", store, "-k", "linear_dynamic-qint8", "--backend", "fbgemm",
                  check=0)  # the only problem is in the newer (forward) set
    text = out.stdout
    assert text.index("Forward compatibility (informational") < text.index("OK:")
    assert "  golden 99.0.0: 3 results: 2 pass, 1 missing" in text
    assert "OK: " in text.splitlines()[-1]
    only = run_cli("bc-harness", "replay", "--goldens", store, "-k", "linear_dynamic-qint8", "--backend", "fbgemm",
                   "--golden", "99.0.0", check=0).stdout.splitlines()[-1]
    assert only.startswith("OK: no golden set older than this torch was replayed; 3 forward results above")


def test_verify_checks_every_manifest_entry_and_lists_unknown_files(store, version):
    clean = run_cli("bc-harness", "verify", store, check=0)
    assert clean.stdout.strip().splitlines()[-1].startswith("OK: ")
    data = bytearray((store / version / "linear/scripted.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (store / version / "linear/scripted.pt").write_bytes(bytes(data))
    (store / version / "lstm/traced.pt").unlink()
    (store / version / "lstm/notes.txt").write_text("left behind")
    (store / "not-a-version").mkdir()
    out = run_cli("bc-harness", "verify", store, check=1).stdout
    assert f"{version}/linear/scripted.pt: corrupt: linear/scripted.pt does not match its manifest entry" in out
    assert f"{version}/lstm/traced.pt: missing:" in out
    assert f"{version}/lstm/notes.txt: unknown file" in out
    assert "not-a-version: directory not named like a torch version" in out
    assert out.strip().splitlines()[-1].startswith("FAILED: ") and "4 problems" in out
    bad = run_cli("bc-harness", "verify", store / "nowhere", check=2).stderr
    assert bad.strip().splitlines()[-1] == f"bc-harness: error: {store / 'nowhere'} does not exist"
    assert "Traceback" not in bad


def test_an_unreadable_directory_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """The OS refuses to list the directory (EACCES). Simulated, because root reads anything;
    a real chmod 000 is tried too where this does not run as root."""
    import errno
    import os

    from harness import cli

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.scandir

    def refuse(path="."):
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", refuse)
    for args in (["verify", locked], ["replay", "--goldens", locked], ["replay", "--layout", "pytorch", locked],
                 ["pin", locked]):
        assert cli.main([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err
        assert err == f"bc-harness: error: cannot read {'golden directory ' if '--goldens' in args else ''}" \
                      f"{locked}: Permission denied\n", err
    monkeypatch.setattr(os, "scandir", real)
    if os.geteuid() != 0:
        locked.chmod(0)
        try:
            out = run_cli("bc-harness", "verify", locked, check=2)
            assert out.stderr == f"bc-harness: error: cannot read {locked}: Permission denied\n"
        finally:
            locked.chmod(0o755)


def test_replay_fails_on_a_directory_named_like_no_torch_version(store, version):
    import shutil

    shutil.copytree(store / version, store / "latest")
    out = run_cli("bc-harness", "replay", "--goldens", store, "-q", "-k", "linear", "--backend", "fbgemm", check=1)
    assert f"{store / 'latest'} is not named like a golden set" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("FAILED")


def test_verify_and_seal_work_outside_any_project(store, tmp_path):
    """A foreign store, from a directory with no pyproject.toml: no catalog is needed to verify it."""
    # outside the project no catalog is found, so a package's interned fixture source matches no
    # running module: refused, with the way out named, and every other file verified
    alone = run_cli("bc-harness", "verify", store, cwd=tmp_path, check=1, process=True)  # no fixture module loaded
    refused = [line for line in alone.stdout.splitlines() if "unsafe" in line]
    assert refused and all("package.pt" in line and "--trust-goldens" in line for line in refused)
    out = run_cli("bc-harness", "verify", store, "--fixtures", FIXTURES, cwd=tmp_path, check=0)
    assert out.stdout.splitlines()[-1].startswith("OK: ")
    run_cli("bc-harness", "seal", "--goldens", store, "--fixtures", FIXTURES, cwd=tmp_path, check=0)


def test_replay_golden_keeps_only_the_named_sets(tmp_path):
    out = tmp_path / "r.json"
    run_cli("bc-harness", "replay", "-k", "linear_relu_package", "--golden", "1.13.1", "--golden", "2.13.0",
            "--backend", "fbgemm", "--json", out, check=0)
    assert {r["golden_version"] for r in records(out)} == {"1.13.1", "2.13.0"}
