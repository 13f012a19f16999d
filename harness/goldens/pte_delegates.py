"""Vetting the XNNPACK delegate's blob inside an ExecuTorch program: its header (``XH00``) inside the
blob, and its graph's tensors against the data they read.

XNNPACK reads a constant tensor's bytes from where its graph says (the blob's constant region, or
a named datum of the program, by key) and as many as its shape and type need, whatever that datum
holds: a graph whose tensor outgrows its data makes XNNPACK read past the buffer. So every tensor
of the graph is checked to fit the data it names, and the graph's tensors' sizes are counted as
what running it allocates. Node parameters (paddings, kernel sizes) are not bounded here: a
hostile one fails in XNNPACK or exhausts the worker's memory limit, a verdict either way.
"""

from __future__ import annotations

import hashlib
import struct

from harness.goldens.pickles import Refused

#: bytes per element of each XNNPACK datatype (runtime_schema.fbs XNNDatatype); the 4-bit ones
#: are half a byte. A type not listed is XNNPACK's own to refuse, and is not checked here.
ELEMENT_BYTES = {1: 4.0, 2: 2.0, 3: 1.0, 4: 1.0, 5: 4.0, 6: 1.0, 7: 4.0, 8: 0.5, 9: 1.0, 10: 0.5, 11: 1.0,
                 12: 4.0, 13: 4.0}
#: the union codes of a graph's values (XValueUnion) and of per-channel quantization parameters
_TENSOR, _QUANTIZED = 1, 2
_PER_CHANNEL, _PER_CHANNEL_GROUP = 1, 4


def header(data, start: int, size: int, what: str) -> tuple[int, int, int, int] | None:
    """(graph offset, graph size, constant offset, constant size) of the XNNPACK blob at
    ``data[start:start + size]``, checked to lie inside it; None where the blob has no such header."""
    if size < 30 or bytes(data[start + 4:start + 8]) != b"XH00":
        return None
    fb_offset, fb_size, const_offset, const_size = struct.unpack_from("<IIIQ", data, start + 10)
    if fb_offset + fb_size > size or const_offset + const_size > size or fb_size < 8:
        raise Refused(f"{what}: an XNNPACK delegate's header puts its data outside its {size} bytes")
    return fb_offset, fb_size, const_offset, const_size


def describe(data, start: int, size: int, what: str) -> str:
    """What a delegate blob declares of itself, and its digest (a change to the delegate's graph,
    which is code, shows in the reviewer's sidecar)."""
    digest = hashlib.sha256(memoryview(data)[start:start + size]).hexdigest()[:16]
    found = header(data, start, size, what)
    if found is None:
        return f"no XNNPACK header, {size} bytes, sha256 {digest}"
    graph = bytes(data[start + found[0] + 4:start + found[0] + 8]).decode("ascii", "replace")
    return f"XH00, graph {graph}, {size} bytes, sha256 {digest}"


def graph_bytes(reader_type, data, start: int, size: int, named: dict[str, int], what: str) -> int:
    """Check the XNNPACK graph of the blob at ``data[start:start + size]`` (``named``: the program's
    named data, key -> its segment's size) and return the bytes its tensors declare."""
    found = header(data, start, size, what)
    if found is None:
        return 0
    fb_offset, fb_size, const_offset, const_size = found
    view = memoryview(data)[start + fb_offset:start + fb_offset + fb_size]
    reader = reader_type(view, len(view), f"{what}: its XNNPACK graph")
    graph = reader.table(reader.scalar("I", 0))
    constants = [(c.scalar(0, "Q"), c.scalar(1, "Q"), c.string(2)) for c in graph.tables(8)]

    def holds(index: int, needed: float) -> None:
        if index == 0:  # 0: no constant data
            return
        if index >= len(constants):
            reader.refuse(f"a tensor names constant data {index} of {len(constants)}")
        offset, length, key = constants[index]
        if key:
            if key not in named:
                reader.refuse(f"a tensor names data {key!r} the program does not have")
            length = named[key]
        elif offset + length > const_size:
            reader.refuse(f"a tensor's constant data at {offset} runs past the blob's constants")
        if length < needed:
            reader.refuse(f"a tensor needs {needed:.0f} bytes of its constant data, which holds {length}")

    declared = 0.0
    for value in graph.tables(2):
        kind, body = value.scalar(0, "B"), value.table(1)
        if body is None or kind not in (_TENSOR, _QUANTIZED):
            reader.refuse(f"a graph value has unknown type {kind}")
        tensor = body.table(0) if kind == _QUANTIZED else body
        if tensor is None:
            reader.refuse("a quantized graph value has no tensor")
        dims = tensor.scalars(2, "I")
        if len(dims) > 16:
            reader.refuse(f"a graph tensor has {len(dims)} dimensions")
        numel = 1
        for d in dims:
            numel *= d
        per = ELEMENT_BYTES.get(tensor.scalar(0, "h"))
        declared += numel * (per or 4.0)
        if per is not None:
            holds(tensor.scalar(3, "I"), numel * per)
        if kind == _QUANTIZED and body.scalar(1, "B") in (_PER_CHANNEL, _PER_CHANNEL_GROUP):
            params = body.table(2)
            if params is not None:
                fields = (2, 3) if body.scalar(1, "B") == _PER_CHANNEL else (4, 5)
                holds(params.scalar(fields[0], "I"), 2 * params.scalar(fields[1], "I"))  # bf16 scales at least
    return int(declared)
