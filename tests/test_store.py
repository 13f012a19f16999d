"""The golden store: atomic writes, manifest last, refusal to overwrite, verified reads."""

import json

import pytest

from harness.goldens import store as store_mod
from harness.goldens.store import CorruptGolden, GoldenExists, GoldenSet, GoldenStore, MissingGolden, sha256

#: what a writer records of the torch that made a set (the manifest must name its directory's)
INFO = {"torch": "2.13.0"}


def test_write_then_read_round_trip(tmp_path):
    s = GoldenStore(tmp_path)
    s.write("2.13.0", {"c": {"backends": {}}}, {"c/a.pt": b"abc"}, {"torch": "2.13.0"})
    gs = s.open("2.13.0")
    assert gs.read("c/a.pt", kind="text") == b"abc"
    assert gs.files["c/a.pt"] == {"sha256": sha256(b"abc"), "size": 3}
    assert gs.manifest["torch"] == "2.13.0" and gs.manifest["format"] == 1
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_manifest_is_written_last(tmp_path, monkeypatch):
    order = []
    real = store_mod.atomic_write
    monkeypatch.setattr(store_mod, "atomic_write", lambda p, d, **kw: (order.append(p.name), real(p, d, **kw)))
    GoldenStore(tmp_path).write("2.13.0", {"c": {}}, {"c/a.pt": b"1", "c/b.pt": b"2"}, INFO)
    assert order == [".bc-harness-store", ".gitignore", "a.pt", "b.pt", "manifest.json"]  # the store's marker first


def test_existing_goldens_are_not_overwritten_without_permission(tmp_path):
    s = GoldenStore(tmp_path)
    s.write("2.13.0", {"c": {}}, {"c/a.pt": b"old"}, INFO)
    with pytest.raises(GoldenExists, match="--force"):
        s.write("2.13.0", {"c": {}}, {"c/a.pt": b"new"}, INFO)
    assert (tmp_path / "2.13.0/c/a.pt").read_bytes() == b"old"
    s.write("2.13.0", {"c": {}}, {"c/a.pt": b"new"}, INFO, overwrite=True)
    assert s.open("2.13.0").read("c/a.pt", kind="text") == b"new"


def test_partial_regeneration_keeps_other_cases_and_drops_stale_files(tmp_path):
    s = GoldenStore(tmp_path)
    s.write("2.13.0", {"a": {}, "b": {}}, {"a/x.pt": b"1", "a/gone.pt": b"2", "b/y.pt": b"3"}, INFO)
    s.write("2.13.0", {"a": {}}, {"a/x.pt": b"4"}, INFO, overwrite=True)
    gs = s.open("2.13.0")
    assert set(gs.files) == {"a/x.pt", "b/y.pt"} and set(gs.cases) == {"a", "b"}
    assert not (tmp_path / "2.13.0/a/gone.pt").exists()


def test_reads_are_verified(tmp_path):
    s = GoldenStore(tmp_path)
    s.write("2.13.0", {"c": {}}, {"c/a.pt": b"abcdef"}, INFO)
    gs = s.open("2.13.0")
    (tmp_path / "2.13.0/c/a.pt").write_bytes(b"abcdeg")
    with pytest.raises(CorruptGolden, match="does not match its manifest"):
        gs.read("c/a.pt", kind="text")
    (tmp_path / "2.13.0/c/a.pt").unlink()
    with pytest.raises(MissingGolden):
        gs.read("c/a.pt", kind="text")
    (tmp_path / "2.13.0/c/extra.pt").write_bytes(b"x")
    with pytest.raises(CorruptGolden, match="no manifest entry"):
        gs.read("c/extra.pt", kind="text")


def test_symlink_out_of_the_store_is_refused(tmp_path):
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"secret")
    s = GoldenStore(tmp_path / "root")
    s.write("2.13.0", {"c": {}}, {"c/a.pt": b"secret"}, INFO)
    link = tmp_path / "root/2.13.0/c/a.pt"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(CorruptGolden, match="a.pt is a symbolic link; nothing in a golden directory is followed"):
        s.open("2.13.0").read("c/a.pt", kind="text")


def test_manifest_problems_are_reported_not_raised(tmp_path):
    (tmp_path / "v").mkdir()
    assert "missing" in GoldenSet.open(tmp_path / "v", "v").manifest_error
    (tmp_path / "v/manifest.json").write_text("{not json")
    assert "unreadable" in GoldenSet.open(tmp_path / "v", "v").manifest_error
    (tmp_path / "v/manifest.json").write_text(json.dumps({"cases": {}}))
    assert "files" in GoldenSet.open(tmp_path / "v", "v").manifest_error


def test_unpinned_directory_allows_data_but_not_code(tmp_path):
    from harness.goldens.safeload import save_bytes

    data = save_bytes({"w": 1}, zipfile=False)  # torch.save data; not the zip a TorchScript file is
    (tmp_path / "x.pt").write_bytes(data)
    gs = GoldenSet.open(tmp_path, "pytorch", required=False)
    assert gs.read("x.pt") == data
    with pytest.raises(CorruptGolden, match="carries code"):
        gs.read("x.pt", kind="scripted")
    gs.trust_unverified = True  # no manifest is trusted; the file is still vetted as what it claims to be
    with pytest.raises(CorruptGolden, match="not loaded: x.pt is not a zip archive as torch writes them"):
        gs.read("x.pt", kind="scripted")


def test_a_file_is_measured_before_it_is_read(tmp_path):
    s = GoldenStore(tmp_path)
    s.write("2.13.0", {"c": {}}, {"c/a.bin": b"abc"}, INFO)
    with open(tmp_path / "2.13.0/c/a.bin", "r+b") as handle:
        handle.truncate(3 << 30)  # sparse: a 3 GiB file that takes no disk
    with pytest.raises(CorruptGolden, match="at most"):
        s.open("2.13.0").read("c/a.bin", kind="text")


def test_versions_and_stray_directories(tmp_path):
    for name in ("2.13.0", "1.13.1", "2.4.1", "not-a-version", ".hidden"):
        (tmp_path / name).mkdir()
    assert GoldenStore(tmp_path).versions() == (["1.13.1", "2.4.1", "2.13.0"], ["not-a-version"])


def test_remove_drops_cases_from_manifest_and_disk(tmp_path):
    s = GoldenStore(tmp_path)
    s.write("2.13.0", {"a": {}, "b": {}}, {"a/x.pt": b"1", "b/y.pt": b"2"}, INFO)
    assert s.remove("2.13.0", ["a", "zzz"], why="a test") == ["a"]
    gs = s.open("2.13.0")
    assert set(gs.cases) == {"b"} and set(gs.files) == {"b/y.pt"}
    assert not (tmp_path / "2.13.0/a").exists() and gs.read("b/y.pt", kind="text") == b"2"
    assert gs.manifest.removed == {"a": "a test"} and gs.manifest.golden_files == 1


def test_concurrent_writers_take_turns(tmp_path):
    """Eight processes write eight different cases at once; the manifest keeps all of them."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_one, args=(tmp_path, i)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    gs = GoldenStore(tmp_path).open("2.13.0")
    assert set(gs.cases) == {f"c{i}" for i in range(8)}
    assert all(gs.read(f"c{i}/a.pt", kind="text") == bytes([i]) * 1000 for i in range(8))


def _write_one(root, i):
    GoldenStore(root).write("2.13.0", {f"c{i}": {}}, {f"c{i}/a.pt": bytes([i]) * 1000}, INFO)


def test_an_owned_entry_naming_no_flow_is_malformed_not_the_end_of_the_run(tmp_path):
    """An edited manifest whose test-owned entry names a flow no stack has: that entry is malformed
    (its results fail), and every other case of the store is still replayed."""
    import json
    import shutil

    from harness.goldens.store import GoldenStore
    from harness.replaying.replayer import owned_cases

    from .conftest import REPO

    source = REPO / "serialized" / "2.13.0"
    (tmp_path / "2.13.0").mkdir()
    shutil.copytree(source / "dyn-linear-qint8", tmp_path / "2.13.0" / "dyn-linear-qint8")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["cases"] = {"dyn-linear-qint8": manifest["cases"]["dyn-linear-qint8"],
                         "zz-owned": {"flow": "bogus", "artifacts": ["scripted"], "backends": {"fbgemm": "ok"},
                                      "owner": "test_x.py::test_x"}}
    (tmp_path / "2.13.0" / "manifest.json").write_text(json.dumps(manifest))
    golden = GoldenStore(tmp_path).open("2.13.0")
    assert owned_cases(golden, {"dyn-linear-qint8"}) == []
    assert "bogus" in golden.cases["zz-owned"].malformed
