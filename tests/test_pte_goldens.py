"""ExecuTorch programs (.pte) as untrusted goldens: the flatbuffer is walked and bounded before the
runtime sees it, and a corrupted or crafted file is a verdict, never a crash of the replay."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.goldens.pickles import Refused
from harness.goldens.pte_file import _Reader, summarize
from harness.goldens.store import sha256
from harness.goldens.vetting import vet

ROOT = Path(__file__).resolve().parents[1]
CASE = "et-static-pc-linear"
#: a committed golden .pte: the XNNPACK method and the portable one, made by ExecuTorch 1.5.1
GOLDEN = Path("/tmp/etstore/2.13.0/et-static-pc-linear/pte.pte") if not (ROOT / "serialized/2.13.0" / CASE).is_dir() else ROOT / "serialized" / "2.13.0" / CASE / "pte.pte"
ALLOWED = frozenset({"XnnpackBackend"})


@pytest.fixture(scope="module")
def pte() -> bytes:
    return GOLDEN.read_bytes()


def _program(data: bytes):
    end = struct.unpack_from("<Q", data, 16)[0] if data[8:12] == b"eh00" else len(data)
    reader = _Reader(data, end, "x")
    return reader, reader.table(reader.scalar("I", 0))


def _plans(data: bytes):
    _, program = _program(data)
    return program.tables(1)


def _patched(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


def test_the_committed_program_is_summarized_as_its_sidecar_says(pte):
    summary = summarize(pte, "x", ALLOWED)
    assert summary.methods == ["forward", "forward_portable"]
    assert [(d, v.split(",")[:2]) for d, v in summary.delegates] == [("XnnpackBackend", ["XH00", " graph XN01"])]
    assert "aten::addmm.out" in summary.operators["forward_portable"]
    sidecar = (GOLDEN.parent / "pte.code.txt").read_text()
    assert summary.text() in sidecar


def _truncated(data):
    return data[: len(data) // 2]


def _renamed(data):
    return data[:4] + b"XX12" + data[8:]


def _root_outside(data):
    return _patched(data, 0, "I", len(data) + 64)


def _plans_overflow(data):
    _, program = _program(data)
    start, _ = program.vector(1, 4)
    return _patched(data, start - 4, "I", 0x0FFFFFFF)


def _segments_outside(data):
    return _patched(data, 24, "Q", 4 * len(data))


#: five ways a .pte is corrupted or crafted, and what the vetting says of each
CORRUPTIONS = {
    "truncated": (_truncated, "outside|extended header"),
    "not a program": (_renamed, "not an ExecuTorch program"),
    "root outside": (_root_outside, "outside the program"),
    "a vector past the end": (_plans_overflow, "runs past the program's end"),
    "segments past the end": (_segments_outside, "extended header puts"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_a_corrupted_program_is_refused_before_the_runtime_reads_it(pte, name):
    corrupt, says = CORRUPTIONS[name]
    with pytest.raises(Refused, match=says):
        vet("pte", corrupt(pte), "x")


def test_a_delegate_off_the_allowlist_is_refused_and_trust_waives_only_that(pte):
    crafted = pte.replace(b"XnnpackBackend", b"ShellBackend__")
    with pytest.raises(Refused, match="delegate 'ShellBackend__'.*not on the delegate allowlist"):
        vet("pte", crafted, "x")
    vet("pte", crafted, "x", trusted=True)
    with pytest.raises(Refused, match="not an ExecuTorch program"):
        vet("pte", _renamed(crafted), "x", trusted=True)


def test_a_kernel_that_touches_files_is_refused_by_name(pte):
    crafted = pte.replace(b"aten::relu", b"aten::save", 1)
    with pytest.raises(Refused, match="calls aten::save, which touches files"):
        vet("pte", crafted, "x")


def test_planned_memory_counts_as_what_running_it_allocates(pte):
    plan = _plans(pte)[1]
    start, n = plan.vector(8, 8)
    assert n >= 2
    with pytest.raises(Refused, match="would need 1.02e\\+03 GiB"):
        vet("pte", _patched(pte, start + 8, "q", 1 << 40), "x")


def test_an_instruction_naming_a_value_it_does_not_have_is_refused(pte):
    values = len(_plans(pte)[1].tables(2))
    chain = _plans(pte)[1].tables(5)[0]
    kernel = chain.tables(2)[0].table(1)
    start, n = kernel.vector(1, 4)
    assert n
    with pytest.raises(Refused, match=f"names value {values + 5} of {values}"):
        vet("pte", _patched(pte, start, "i", values + 5), "x")


def test_a_weight_pointed_at_a_smaller_datum_is_refused_before_xnnpack_reads_past_it(pte):
    """XNNPACK reads a weight's bytes from the named datum its graph names, as many as the weight's
    shape needs: a datum swapped for a smaller one would be read past its end."""
    reader, program = _program(pte)
    segments = [t.scalar(1, "Q") for t in program.tables(4)]
    named = program.tables(7)
    biggest = max(named, key=lambda n: segments[n.scalar(1, "I")])
    smallest = min(range(len(segments)), key=segments.__getitem__)
    with pytest.raises(Refused, match="a tensor needs .* bytes of its constant data, which holds"):
        vet("pte", _patched(pte, biggest._at(1), "I", smallest), "x")


def test_a_method_declaring_thousands_of_delegate_calls_is_refused_at_once(pte):
    """Each delegate call is a delegate instance the runtime builds: 64 at most, each blob read once."""
    _, program = _program(pte)
    start, n = program.tables(1)[0].vector(7, 4)
    assert n == 1
    with pytest.raises(Refused, match="declares 65 delegate calls"):
        vet("pte", _patched(pte, start - 4, "I", 65), "x")


def test_names_that_would_forge_sidecar_lines_are_refused(pte):
    """Operators, overloads and methods are identifiers: a newline in one would add lines to the
    reviewer's sidecar."""
    crafted = pte.replace(b"forward_portable", b"forward\nportable", 1)
    with pytest.raises(Refused, match="a method is called 'forward.*portable'"):
        vet("pte", crafted, "x", trusted=True)
    with pytest.raises(Refused, match="not a namespace::name"):
        vet("pte", pte.replace(b"aten::relu", b"aten:relu ", 1), "x", trusted=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_any_mangled_program_is_summarized_or_refused_never_an_error(pte, flips, cut):
    data = bytearray(pte)
    for where, byte in flips:
        data[where % len(data)] = byte
    if cut is not None:
        data = data[: cut % len(data)]
    try:
        vet("pte", bytes(data), "x")
    except Refused:
        pass


# -- through the replay: a verdict per result, the process alive ---------------------------------

@pytest.fixture
def one_case_store(tmp_path):
    """A store of the committed 2.13.0 set's one ExecuTorch case, manifest and all."""
    source = ROOT / "serialized" / "2.13.0"
    target = tmp_path / "goldens" / "2.13.0"
    shutil.copytree(source / CASE, target / CASE)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["cases"] = {CASE: manifest["cases"][CASE]}
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k.startswith(CASE + "/")}
    manifest["golden_files"] = len(manifest["files"])
    (target / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(ROOT / "serialized" / ".bc-harness-store", tmp_path / "goldens")
    return tmp_path / "goldens"


def _replayed(store, catalog):
    from harness.goldens.store import GoldenStore
    from harness.replaying.request import Options
    from harness.replaying.schedule import replay_store

    return [r for r in replay_store(GoldenStore(store), [c for c in catalog if c.id == CASE], Options())
            if r.golden_version == "2.13.0"]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_a_corrupted_pte_vouched_by_its_manifest_is_corrupt_and_the_rest_replays(one_case_store, catalog, name):
    pytest.importorskip("executorch")
    from harness.stacks.executorch.compat import problem

    if problem():
        pytest.skip(problem())
    corrupt, says = CORRUPTIONS[name]
    path = one_case_store / "2.13.0" / CASE / "pte.pte"
    data = corrupt(path.read_bytes())
    path.write_bytes(data)
    manifest_path = one_case_store / "2.13.0" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())  # whoever commits a golden can edit its manifest
    manifest["files"][f"{CASE}/pte.pte"] = {"sha256": sha256(data), "size": len(data)}
    manifest_path.write_text(json.dumps(manifest))
    results = {(r.artifact, r.backend): r for r in _replayed(one_case_store, catalog)}
    assert {k: r.verdict for k, r in results.items() if k[0] == "pte"} == \
        {("pte", "xnnpack"): "corrupt", ("pte", "portable"): "corrupt"}
    assert all(r.verdict == "pass" for k, r in results.items() if k[0] == "export"), results
