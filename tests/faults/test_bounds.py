"""A golden cannot make the process take more than the stated memory bound: sizes are checked
before reading, zip inflation is bounded by the members' declared sizes, and each member is read
no further than its header declares (harness.goldens.vetting)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import pytest

from harness.goldens.pickles import Refused, pickle_globals
from harness.goldens.store import CorruptGolden, GoldenSet, sha256
from harness.goldens.archives import MAX_INFLATED_BYTES, Archive
from harness.goldens.vetting import MAX_FILE_BYTES

from ..conftest import REPO


def zip_bomb(inflated: int) -> bytes:
    """A torch.save-shaped zip whose data.pkl inflates from a few KB (per GiB, about 1 MB) to ``inflated`` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(inflated >> 20):
                member.write(chunk)
    return buffer.getvalue()


def _vouched_set(tmp_path, name: str, data: bytes | None = None, sparse: int | None = None) -> GoldenSet:
    directory = tmp_path / "2.13.0"
    (directory / name).parent.mkdir(parents=True)
    path = directory / name
    if sparse is not None:
        with open(path, "wb") as handle:
            handle.truncate(sparse)
        size, digest = sparse, "0" * 64
    else:
        path.write_bytes(data)
        size, digest = len(data), sha256(data)
    manifest = {"torch": "2.13.0", "cases": {"x": {}}, "files": {name: {"sha256": digest, "size": size}},
                "golden_files": 1}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return GoldenSet.open(directory, "2.13.0")


def test_a_vouched_zip_bomb_is_refused_before_inflating(tmp_path):
    golden = _vouched_set(tmp_path, "x/state_dict.pt", zip_bomb(MAX_INFLATED_BYTES + (1 << 20)))
    with pytest.raises(CorruptGolden, match="would inflate to"):
        golden.read("x/state_dict.pt", kind="state_dict")


def test_a_member_that_inflates_past_its_declared_size_is_read_only_that_far():
    """A header may understate what a member inflates to; the reader inflates one byte past the
    declared size, no more, and refuses the member."""
    plain = bytes(4 << 20)
    crafted = _member_declaring(plain, "archive/data.pkl", declared=1024)
    with pytest.raises(Refused, match="member archive/data.pkl is not the size its header declares"):
        Archive(crafted, "bomb").read("archive/data.pkl")


def _member_declaring(plain: bytes, name: str, declared: int) -> bytes:
    """A one-member zip holding ``plain`` deflated, whose headers declare ``declared`` bytes."""
    import struct
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(plain) + compressor.flush()
    raw, crc = name.encode(), zlib.crc32(plain[:declared])
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(body), declared, len(raw), 0) + raw
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(body), declared,
                          len(raw), 0, 0, 0, 0, 0, 0) + raw
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    return local + body + central + end


SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from harness.goldens.store import CorruptGolden, GoldenSet
golden = GoldenSet.open(Path(sys.argv[2]), "2.13.0")
try:
    golden.read(sys.argv[3], kind="state_dict")
    outcome = "loaded"
except CorruptGolden as exc:
    outcome = str(exc)
# the peak resident memory of this process image (ru_maxrss would count the forking parent's)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"outcome": outcome, "max_rss_mib": peak / 1024}))
"""


@pytest.mark.parametrize("what", ["zip-bomb-1GiB", "sparse-2GiB"])
def test_memory_stays_within_the_bound(what, tmp_path):
    """In a fresh process, the peak memory of refusing a 1 GiB zip bomb or a 2 GiB (sparse) file."""
    name = "x/state_dict.pt"
    if what == "zip-bomb-1GiB":
        _vouched_set(tmp_path, name, zip_bomb(1 << 30))
    else:
        _vouched_set(tmp_path, name, sparse=2 << 30)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO), str(tmp_path / "2.13.0"), name],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["outcome"] != "loaded" and ("inflate" in found["outcome"] or "at most" in found["outcome"])
    assert found["max_rss_mib"] < (MAX_FILE_BYTES >> 20) + 64, found


def test_pickle_scanner_sees_globals_of_every_protocol_and_refuses_computed_ones():
    class Payload:
        def __reduce__(self):
            return (exec, ("1",))

    import pickle

    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        assert pickle_globals(pickle.dumps(Payload(), protocol=protocol), "p") == {"builtins.exec"}, protocol
    # STACK_GLOBAL on names fetched back from the memo
    memo = b"\x80\x04\x8c\x08builtins\x94\x8c\x04exec\x94\x93h\x00h\x01\x93."
    assert pickle_globals(memo, "p") == {"builtins.exec"}
    with pytest.raises(Refused, match="computes"):
        pickle_globals(b"\x80\x04]]\x93.", "p")
    with pytest.raises(Refused, match="extension registry"):
        pickle_globals(b"\x80\x02\x82\x01.", "p")
    with pytest.raises(Refused, match="not a readable pickle"):
        pickle_globals(b"\x80\x02\xff", "p")
