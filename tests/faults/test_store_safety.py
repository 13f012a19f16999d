"""The store survives what happens to real machines: SIGKILL mid-regeneration, a full disk,
and two writers at once. Store-level tests: no torch, so each trial is a fresh process in
milliseconds."""

from __future__ import annotations

import errno
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness.goldens.store as store_mod
from harness.goldens.sealing import verify
from harness.goldens.store import GoldenStore

from ..conftest import REPO

CASES = [f"case{i}" for i in range(8)]


def _set(tag: str) -> dict[str, bytes]:
    """One full golden set: every case's files, their bytes marked with ``tag`` (named ``.bin``: files
no replay loads, so verify checks their checksums and does not vet them as torch files)."""
    rng = random.Random(tag)
    return {f"{c}/{kind}.bin": tag.encode() + bytes(rng.randrange(256) for _ in range(4096))
            for c in CASES for kind in ("state_dict", "scripted", "expected.fbgemm")}


SETS = {tag: _set(tag) for tag in ("A", "B")}


def info(tag: str) -> dict:
    """A set's header: the torch it names (its directory's) and its tag."""
    return {"torch": "2.13.0", "tag": tag}
WRITER = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from harness.goldens.store import GoldenStore
import random
root, tags = Path(sys.argv[1]), sys.argv[2].split(",")
def make(tag):
    rng = random.Random(tag)
    return {{f"{{c}}/{{k}}.bin": tag.encode() + bytes(rng.randrange(256) for _ in range(4096))
            for c in {CASES!r} for k in ("state_dict", "scripted", "expected.fbgemm")}}
sets = {{t: make(t) for t in tags}}
cases = sorted({{n.split("/")[0] for n in next(iter(sets.values()))}})
print("ready", flush=True)
i = 0
while True:
    tag = tags[i % len(tags)]
    GoldenStore(root).write("2.13.0", {{c: {{"tag": tag}} for c in cases}}, sets[tag], {{"torch": "2.13.0", "tag": tag}}, overwrite=True)
    i += 1
    if len(sys.argv) > 3 and i >= int(sys.argv[3]):
        break
"""


def _state(root: Path) -> str:
    """Which whole set the store holds ('A' or 'B'), after checking every file against it."""
    verified, findings = verify(root)
    # a kill can leave the stage of the write it interrupted: verify names it, the next write sweeps it
    assert all(f.where.startswith(".stage-2.13.0-") for f in findings), findings
    manifest = json.loads((root / "2.13.0" / "manifest.json").read_text())
    tag = manifest["tag"]
    assert {c: e["tag"] for c, e in manifest["cases"].items()} == {c: tag for c in CASES}
    for name, data in SETS[tag].items():
        assert (root / "2.13.0" / name).read_bytes() == data
    assert verified == len(SETS[tag])
    return tag


# 20 writers killed at random moments in the README's tier (both outcomes seen but for a chance
# of about (2/3)^20); 50 in the nightly's slow tier
@pytest.mark.parametrize("trials", [20, pytest.param(50, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_never_loses_or_mixes_goldens(tmp_path, trials):
    root = tmp_path / "serialized"
    GoldenStore(root).write("2.13.0", {c: {"tag": "A"} for c in CASES}, SETS["A"], info("A"))
    # kills land from before a write's swap to well after it, however fast this machine writes
    started = time.perf_counter()
    GoldenStore(root).write("2.13.0", {c: {"tag": "A"} for c in CASES}, SETS["A"], info("A"), overwrite=True)
    one_write = time.perf_counter() - started
    rng = random.Random(0)
    outcomes, before = set(), "A"
    for _ in range(trials):
        other = "B" if before == "A" else "A"  # the writer's first write changes the set
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), f"{other},{before}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 3 * one_write))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = _state(root)  # a whole set, every file verified
        outcomes.add("old" if after == before else "new")
        before = after
    assert outcomes == {"old", "new"}  # kills landed both before and after swaps
    # the next writer sweeps what killed ones left behind
    GoldenStore(root).write("2.13.0", {c: {"tag": "A"} for c in CASES}, SETS["A"], info("A"), overwrite=True)
    assert not [p for p in root.iterdir() if p.name.startswith(".stage-")]
    assert _state(root) == "A"


def test_a_full_disk_fails_the_write_and_changes_nothing(tmp_path, monkeypatch):
    root = tmp_path / "serialized"
    GoldenStore(root).write("2.13.0", {c: {"tag": "A"} for c in CASES}, SETS["A"], info("A"))
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    real, calls = store_mod.atomic_write, []

    def full_disk(path, data, **kw):
        calls.append(path)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kw)

    monkeypatch.setattr(store_mod, "atomic_write", full_disk)
    with pytest.raises(OSError) as raised:
        GoldenStore(root).write("2.13.0", {c: {"tag": "B"} for c in CASES}, SETS["B"], info("B"), overwrite=True)
    assert raised.value.errno == errno.ENOSPC
    after = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before and _state(root) == "A"


def test_two_concurrent_writers_take_turns(tmp_path):
    root = tmp_path / "serialized"
    GoldenStore(root).write("2.13.0", {c: {"tag": "A"} for c in CASES}, SETS["A"], info("A"))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), tags, "15"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) for tags in ("A,B", "B,A")]
    for w in writers:
        assert w.wait(timeout=120) == 0, w.stderr.read().decode()
    assert _state(root) in {"A", "B"}
