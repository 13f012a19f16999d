"""Fault injection: every fault kind on every artifact kind. For each: the result is the right
non-pass verdict with a one-line reason, no payload runs, the replay changes no byte of the store,
every other golden keeps its verdict, and the replay returns normally.

Faults of one file are applied to that kind's golden. Faults of the whole golden set (manifest
deleted, manifest not JSON, version directory misnamed) are applied with an unvouched
``__reduce__`` payload planted in place of that kind's golden, so they prove the payload is
not loaded when the manifest cannot vouch for anything. Store writes under SIGKILL, a full disk
and concurrent writers are in test_store_safety.py beside this file."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest

from harness.goldens.layout import file_name
from harness.goldens.safeload import save_bytes
from harness.replaying.request import Options
from harness.replaying.schedule import replay_store
from harness.goldens.store import GoldenStore, sha256

from ..conftest import SLICE

#: one case of the session store per artifact kind (tests/conftest.py SLICE)
KIND_CASE = {"state_dict": "linear", "scripted": "linear", "traced": "linear",
             "package": "linear_relu_package_quantization_transforms", "export": "pt2e-ptq-linear",
             "lite": "ondevice-linear"}
#: a case of the store that no fault touches, replayed beside the faulty one
WITNESS = "linear_dynamic-qint8"
#: a different case with the same kind, for the swapped-file fault
OTHER_CASE = {"state_dict": "lstm", "scripted": "conv2d_graph", "traced": "conv2d_graph",
              "package": None, "export": None, "lite": "jit-mlp-dynamic"}


def _vouch(root, version, name, data):
    """Write bytes and make the manifest vouch for them: they pass the checksum, then must fail to load."""
    (root / version / name).write_bytes(data)
    path = root / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"][name] = {"sha256": sha256(data), "size": len(data)}
    path.write_text(json.dumps(manifest))


def _zip_bomb() -> bytes:
    """A zip whose one member inflates from a few KB to 257 MiB of zeros (past the 256 MiB bound)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(257):
                member.write(chunk)
    return buffer.getvalue()


def _payload(marker) -> bytes:
    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return save_bytes({"weight": Payload()})


def _fault(kind, fault, root, version, marker):
    """Apply ``fault`` to the golden of ``kind``; returns the verdicts it may give, or None to skip."""
    name = f"{KIND_CASE[kind]}/{file_name(kind)}"
    path = root / version / name
    if fault == "missing":
        path.unlink()
        return {"missing"}
    if fault == "zero-length":
        path.write_bytes(b"")
        return {"corrupt"}
    if fault == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
        return {"corrupt"}
    if fault == "bit-flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x08
        path.write_bytes(bytes(data))
        return {"corrupt"}
    if fault == "swapped":
        other = OTHER_CASE[kind]
        if other is None:
            return None
        path.write_bytes((root / version / f"{other}/{file_name(kind)}").read_bytes())
        return {"corrupt"}
    if fault == "manifest-edited":
        mpath = root / version / "manifest.json"
        manifest = json.loads(mpath.read_text())
        manifest["files"][name]["sha256"] = "0" * 64
        mpath.write_text(json.dumps(manifest))
        return {"corrupt"}
    if fault == "symlink-outside":
        outside = root.parent / "outside.bin"
        outside.write_bytes(path.read_bytes())
        path.unlink()
        os.symlink(outside, path)
        return {"corrupt"}
    if fault == "zip-bomb":  # refused by the inflation bound before anything inflates it
        _vouch(root, version, name, _zip_bomb())
        return {"corrupt"}
    if fault == "payload":  # refused by the pickle allowlist before anything unpickles it
        _vouch(root, version, name, _payload(marker))
        return {"corrupt"}
    raise AssertionError(fault)


FAULTS = ["missing", "zero-length", "truncated", "bit-flip", "swapped", "manifest-edited", "symlink-outside",
          "zip-bomb", "payload"]
SET_FAULTS = ["manifest-deleted", "manifest-invalid-json", "version-misnamed"]


def _snapshot(root):
    return {p.relative_to(root.parent): (p.is_symlink(), p.read_bytes() if p.is_file() else None)
            for p in sorted(root.parent.rglob("*"))}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", sorted(KIND_CASE))
def test_fault(kind, fault, store, catalog, version, tmp_path):
    marker = tmp_path / "payload-ran"
    expected = _fault(kind, fault, store, version, marker)
    if expected is None:
        pytest.skip(f"the session store has only one {kind} case")
    # the smallest replay that shows the fault: its case, and a witness whose verdicts must not move
    chosen = (KIND_CASE[kind], WITNESS)
    cases = [c for c in catalog if c.id in chosen]
    before = _snapshot(store)
    results = list(replay_store(GoldenStore(store), cases, Options(patterns=[f"[{i[0]}]{i[1:]}" for i in chosen])))
    assert _snapshot(store) == before, "the replay changed the store"
    hit = [r for r in results if (r.case, r.artifact) == (KIND_CASE[kind], kind)]
    assert hit, "the faulty golden produced no result"
    verdicts = {r.verdict for r in hit} - {"skip"}
    assert verdicts and verdicts <= expected, [(r.backend, r.verdict, r.message) for r in hit]
    assert all(r.message and "\n" not in r.message for r in hit if r.verdict != "pass")
    assert not marker.exists(), "a payload ran"
    intruders = [r for r in results if r.case == "*"]  # what must not be in a store, said once for the store
    assert [r.verdict for r in intruders] == (["corrupt"] if fault == "symlink-outside" else [])
    others = [r for r in results if (r.case, r.artifact) != (KIND_CASE[kind], kind) and r.case != "*"]
    assert others and {r.verdict for r in others} <= {"pass", "skip"}, \
        [(r.case, r.artifact, r.backend, r.verdict, r.message) for r in others if r.verdict not in ("pass", "skip")]


@pytest.mark.parametrize("fault", SET_FAULTS)
@pytest.mark.parametrize("kind", sorted(KIND_CASE))
def test_golden_set_fault(kind, fault, store, catalog, version, tmp_path):
    marker = tmp_path / "payload-ran"
    (store / version / KIND_CASE[kind] / file_name(kind)).write_bytes(_payload(marker))  # not vouched for
    manifest = store / version / "manifest.json"
    if fault == "manifest-deleted":
        manifest.unlink()
        says = "manifest.json is missing"
    elif fault == "manifest-invalid-json":
        manifest.write_text(manifest.read_text()[:-40] + "}{")
        says = "manifest.json is unreadable"
    else:
        (store / version).rename(store / f"backup-of-{version}")
        says = "is not named like a golden set"
    cases = [c for c in catalog if c.id in SLICE]
    before = _snapshot(store)
    results = list(replay_store(GoldenStore(store), cases, Options()))
    assert _snapshot(store) == before, "the replay changed the store"
    assert not marker.exists(), "a payload ran"
    # one result stands for the whole golden set: nothing in it was loaded, nothing passed
    assert [(r.case, r.artifact, r.verdict) for r in results] == [("*", "*", "corrupt")], \
        [(r.case, r.artifact, r.backend, r.verdict) for r in results][:5]
    assert says in results[0].message and "\n" not in results[0].message
