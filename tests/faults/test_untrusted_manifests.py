"""A manifest is written by whoever can commit a golden: what it names is confined to the store,
what it drops is noticed, and whatever shape it has gives a verdict, never a traceback."""

from __future__ import annotations

import json
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.goldens.manifest import Manifest, ManifestError
from harness.replaying.request import Options
from harness.replaying.schedule import replay_store
from harness.goldens.sealing import verify
from harness.goldens.store import GoldenError, GoldenStore, sha256

from ..conftest import SLICE, run_cli


def _edit(store, version, change):
    path = store / version / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _set_results(store, catalog, **options):
    return list(replay_store(GoldenStore(store), [c for c in catalog if c.id in SLICE], Options(**options)))


# finding 2: prune (and every path a manifest names) stays inside the store -------------------------

def test_a_case_id_that_climbs_out_makes_the_manifest_unusable_and_prune_deletes_nothing(store, version, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    _edit(store, version, lambda m: m["cases"].__setitem__("../../victim", {"owner": "test_x.py::test_gone"}))
    try:
        GoldenStore(store).remove(version, ["../../victim"], why="test")
    except GoldenError as exc:
        assert "no valid case id" in str(exc)
    else:
        raise AssertionError("remove accepted a manifest naming ../../victim")
    assert (victim / "precious.txt").read_text() == "keep me"
    _verified, findings = verify(store)
    assert any("no valid case id" in f.problem for f in findings)


def test_file_names_that_climb_out_or_hide_are_refused_on_read():
    for bad in ("../x.pt", "/etc/passwd", "a/../../x", "a/b/c.pt", "a/.hidden", ".manifest.json", "a\\..\\x"):
        try:
            Manifest.parse(json.dumps({"files": {bad: {"sha256": "0" * 64, "size": 1}}}))
        except ManifestError as exc:
            assert "no valid golden file name" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_prune_through_the_plugin_never_leaves_the_store(outside_ci, pytester, store, version, tmp_path):
    from ..conftest import FIXTURES

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    _edit(store, version, lambda m: m["cases"].__setitem__("../../victim", {"flow": "eager"}))
    result = pytester.runpytest("--golden", f"--golden-dir={store}", f"--golden-fixtures={FIXTURES}",
                                "--golden-prune", "-k", "linear and state_dict", "-p", "no:cacheprovider")
    assert "pruned" not in result.stdout.str()
    assert (victim / "precious.txt").read_text() == "keep me"
    assert "no valid case id" in result.stdout.str()


# finding 4: edits that would switch checking off ----------------------------------------------------

def test_golden_sets_swapped_between_directories_are_corrupt(store, catalog, version):
    shutil.copytree(store / version, store / "2.8.0")
    results = [r for r in _set_results(store, catalog) if r.golden_version == "2.8.0"]
    assert [(r.case, r.verdict) for r in results] == [("*", "corrupt")]
    assert f"says torch {version} made the set" in results[0].message
    assert any("2.8.0/manifest.json" == f.where for f in verify(store)[1])


def test_a_case_marked_skipped_with_its_files_deleted_fails(store, catalog, version):
    def hide(manifest):
        manifest["cases"]["linear"]["skipped"] = "nothing to see"
        for name in [n for n in manifest["files"] if n.startswith("linear/")]:
            del manifest["files"][name]
            (store / version / name).unlink()

    _edit(store, version, hide)
    results = _set_results(store, catalog)
    assert [(r.case, r.verdict) for r in results] == [("*", "corrupt")]
    assert "goldens were removed by hand" in results[0].message
    out = run_cli("bc-harness", "replay", "--goldens", store, "-q", "-k", "linear", check=1)
    assert "Traceback" not in out.stdout + out.stderr


def test_a_case_marked_skipped_that_keeps_its_files_fails(store, catalog, version):
    _edit(store, version, lambda m: m["cases"]["linear"].__setitem__("skipped", "nothing to see"))
    results = _set_results(store, catalog)
    assert [(r.case, r.verdict) for r in results] == [("*", "corrupt")]
    assert "marks case linear skipped yet vouches for its files" in results[0].message


def test_removal_through_the_store_is_recorded_and_still_verifies(store, version):
    assert GoldenStore(store).remove(version, ["lstm"], why="retired in a test") == ["lstm"]
    manifest = json.loads((store / version / "manifest.json").read_text())
    assert manifest["removed"] == {"lstm": "retired in a test"}
    assert manifest["golden_files"] == len(manifest["files"])
    assert verify(store)[1] == []


def test_a_set_without_a_golden_count_asks_for_seal_which_records_it(store, catalog, version):
    _edit(store, version, lambda m: m.pop("golden_files"))
    results = _set_results(store, catalog)
    assert [r.verdict for r in results] == ["corrupt"] and "run 'bc-harness seal'" in results[0].message
    sealed = run_cli("bc-harness", "seal", "--goldens", store, check=0)
    assert f"{version}: sealed" in sealed.stdout
    assert verify(store)[1] == []


# finding 5: shapes that used to raise ----------------------------------------------------------------

SHAPES = {
    "case entry is a string": lambda m: m["cases"].__setitem__("linear", "a string"),
    "cases is a list": lambda m: m.__setitem__("cases", []),
    "backends is a string": lambda m: m["cases"]["linear"].__setitem__("backends", "all"),
    "files is a list": lambda m: m.__setitem__("files", []),
    "golden count is text": lambda m: m.__setitem__("golden_files", "many"),
    "removed is a list": lambda m: m.__setitem__("removed", ["x"]),
    "torch is a number": lambda m: m.__setitem__("torch", 2.13),
}


def test_every_malformed_shape_gives_a_verdict(store, catalog, version):
    import pytest

    for what, change in SHAPES.items():
        shutil.copy(store / version / "manifest.json", store / "saved.json")
        _edit(store, version, change)
        try:
            results = _set_results(store, catalog)
        except Exception as exc:  # pragma: no cover - the failure this test exists for
            pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
        assert results and "corrupt" in {r.verdict for r in results}, what
        assert all("\n" not in r.message for r in results), what
        verify(store)
        shutil.move(store / "saved.json", store / version / "manifest.json")


def test_json_nested_200000_deep_is_corrupt(store, catalog, version):
    (store / version / "manifest.json").write_text('{"files": ' + "[" * 200_000 + "]" * 200_000 + "}")
    results = _set_results(store, catalog)
    assert [r.verdict for r in results] == ["corrupt"] and "not JSON" in results[0].message
    out = run_cli("bc-harness", "verify", store, check=1)
    assert "Traceback" not in out.stdout + out.stderr


def test_a_manifest_over_the_size_bound_is_not_read(store, catalog, version):
    path = store / version / "manifest.json"
    with open(path, "r+b") as handle:
        handle.truncate(17 << 20)  # sparse: no memory, no disk
    results = _set_results(store, catalog)
    assert [r.verdict for r in results] == ["corrupt"] and "at most" in results[0].message


# the fuzz -----------------------------------------------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_keys = st.sampled_from(["format", "torch", "pinned", "cases", "files", "golden_files", "removed", "fingerprint",
                         "cpu_capability"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(top=st.dictionaries(_keys, _json, max_size=4), entry=_json, file_entry=_json, depth=st.integers(0, 3000))
def test_fuzzed_manifests_give_verdicts_never_tracebacks(store, catalog, version, top, entry, file_entry, depth):
    """Random values at the manifest's top level, in a case entry and in a file entry, and deep
    nesting: the replay of the set returns verdicts (one line each), and verify returns findings."""
    path = store / version / "manifest.json"
    original = path.read_text()
    try:
        manifest = json.loads(original)
        manifest.update(top)
        if isinstance(manifest.get("cases"), dict):
            manifest["cases"]["per_tensor_observer"] = entry
        if isinstance(manifest.get("files"), dict):
            manifest["files"]["per_tensor_observer/input.pt"] = file_entry
        text = json.dumps(manifest)
        path.write_text(text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}" if depth else text)
        cases = [c for c in catalog if c.id == "per_tensor_observer"]
        results = list(replay_store(GoldenStore(store), cases, Options(backends=["fbgemm"])))
        assert results and all(r.message is not None and "\n" not in r.message for r in results)
        assert {r.verdict for r in results} <= {"pass", "skip", "corrupt", "missing"}
        verify(store)
    finally:
        path.write_text(original)


def test_verify_names_stages_of_killed_writes_and_hidden_files(store, version):
    (store / ".stage-2.13.0-4242").mkdir()
    (store / version / "linear" / ".leftover.pt.tmp").write_bytes(b"x")
    where = {f.where: f.problem for f in verify(store)[1]}
    assert "killed" in where[".stage-2.13.0-4242"]
    assert "hidden file" in where[f"{version}/linear/.leftover.pt.tmp"]


def test_a_vouched_payload_as_get_attr_targets_is_a_verdict(store, catalog, version, tmp_path):
    import pickle

    from .test_payloads import _Exec, _touch

    marker = tmp_path / "payload-ran"
    name, data = "fx-mlp-ref/get_attr_targets.pt", pickle.dumps(_Exec(_touch(marker)), protocol=2)
    (store / version / name).write_bytes(data)
    _edit(store, version, lambda m: m["files"].__setitem__(name, {"sha256": sha256(data), "size": len(data)}))
    hit = [r for r in _set_results(store, catalog) if (r.case, r.artifact) == ("fx-mlp-ref", "package")]
    assert hit and {r.verdict for r in hit} == {"corrupt"} and not marker.exists()
