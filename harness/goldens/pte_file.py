"""Vetting an ExecuTorch program (.pte) before the runtime reads it: every offset, count and size of
its flatbuffer bounded inside the file, every index inside what it indexes, every operator and
delegate on an allowlist, and what running it would allocate counted.

A .pte is a flatbuffer (schema ``executorch_flatbuffer.Program``, identifier ``ET12``), optionally
followed by data segments that an extended header (``eh00``, at byte 8) locates. The runtime's
own verifier is skipped by default in its C++ loader (and ExecuTorch 1.2.0's build has none), and
a delegate's blob is handed to the delegate as it is; so this module walks the whole program with
a reader that refuses any read outside the file, and harness.goldens.pte_delegates checks the
XNNPACK delegate's blob: its header and its graph's tensors against the data they read.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from harness.goldens import pte_delegates
from harness.goldens.operators import refusal
from harness.goldens.pickles import Refused

IDENTIFIER = b"ET12"
#: the most tables, vector items and strings one walk reads: a bound on the time a crafted file
#: can take (the catalog's largest program has a few thousand)
MAX_ITEMS = 1_000_000
#: the most delegate calls a method may declare (each is a delegate instance the runtime builds; the
#: catalog's programs have one)
MAX_DELEGATES = 64
#: what an operator (namespace::name), its overload and a method may be called: no separators, no
#: control characters (they are shown to a reviewer, one per line, in the sidecar)
_OPERATOR, _OVERLOAD, _METHOD = (re.compile(r"[A-Za-z_]\w*::[A-Za-z_]\w*"), re.compile(r"\w*"),
                                 re.compile(r"[A-Za-z_]\w*"))
#: bytes per element of each ExecuTorch scalar type (schema/scalar_type.fbs); an unknown type
#: counts as 8
ELEMENT_BYTES = {0: 1, 1: 1, 2: 2, 3: 4, 4: 8, 5: 2, 6: 4, 7: 8, 11: 1, 12: 1, 13: 1, 14: 4, 15: 2, 16: 1, 17: 1,
                 22: 2, 23: 1, 24: 1, 25: 1, 26: 1, 27: 2, 28: 4, 29: 8}
#: the value kinds of an EValue (union KernelTypes), by type code
_TENSOR, _TENSOR_LISTS, _VALUE_TYPES = 5, (10, 11), range(1, 12)
#: the instruction kinds (union InstructionArguments)
_KERNEL, _DELEGATE, _MOVE, _JUMP, _FREE = 1, 2, 3, 4, 5


class _Reader:
    """Bounded reads of a flatbuffer in ``data[:end]``: each read checked, each item counted."""

    def __init__(self, data: bytes, end: int, what: str):
        self.data, self.end, self.what, self.items = data, end, what, 0

    def refuse(self, why: str):
        raise Refused(f"{self.what}: {why}")

    def scalar(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.end:
            self.refuse(f"a read of {size} bytes at {pos} is outside the program's {self.end} bytes")
        return struct.unpack_from("<" + fmt, self.data, pos)[0]

    def count(self, n: int = 1) -> None:
        self.items += n
        if self.items > MAX_ITEMS:
            self.refuse(f"more than {MAX_ITEMS} tables, items and strings")

    def table(self, pos: int) -> "_Table":
        self.count()
        vtable = pos - self.scalar("i", pos)
        vsize, tsize = self.scalar("H", vtable), self.scalar("H", vtable + 2)
        if vsize < 4 or vsize % 2 or vtable + vsize > self.end or pos + tsize > self.end:
            self.refuse(f"the table at {pos} has a malformed vtable")
        return _Table(self, pos, vtable, (vsize - 4) // 2, tsize)


@dataclass
class _Table:
    reader: _Reader
    pos: int
    vtable: int
    fields: int
    size: int

    def _at(self, index: int) -> int | None:
        if index >= self.fields:
            return None
        offset = self.reader.scalar("H", self.vtable + 4 + 2 * index)
        if offset and offset + 1 > self.size:
            self.reader.refuse(f"a field of the table at {self.pos} lies outside it")
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default=0):
        at = self._at(index)
        return default if at is None else self.reader.scalar(fmt, at)

    def _target(self, index: int) -> int | None:
        at = self._at(index)
        return None if at is None else at + self.reader.scalar("I", at)

    def table(self, index: int) -> "_Table | None":
        at = self._target(index)
        return None if at is None else self.reader.table(at)

    def vector(self, index: int, item: int) -> tuple[int, int]:
        """(start, count) of a vector of ``item``-byte elements; (0, 0) where absent."""
        at = self._target(index)
        if at is None:
            return 0, 0
        n = self.reader.scalar("I", at)
        if at + 4 + n * item > self.reader.end:
            self.reader.refuse(f"a vector of {n} items at {at} runs past the program's end")
        self.reader.count(max(1, n // 64))
        return at + 4, n

    def scalars(self, index: int, fmt: str) -> list:
        start, n = self.vector(index, struct.calcsize(fmt))
        self.reader.count(n)
        return list(struct.unpack_from(f"<{n}{fmt}", self.reader.data, start)) if n else []

    def tables(self, index: int) -> list["_Table"]:
        start, n = self.vector(index, 4)
        return [self.reader.table(start + 4 * i + self.reader.scalar("I", start + 4 * i)) for i in range(n)]

    def string(self, index: int) -> str:
        start, n = self.vector(index, 1)
        if n > 256:
            self.reader.refuse(f"a string of {n} bytes at {start} (names are short)")
        return bytes(self.reader.data[start:start + n]).decode("utf-8")


@dataclass
class PteSummary:
    """What a vetted .pte holds: the reviewer's sidecar and the records are made of it."""

    version: int = 0
    methods: list[str] = field(default_factory=list)
    operators: dict[str, list[str]] = field(default_factory=dict)  # method -> namespace::name.overload
    #: (id, the version its blob declares); while walking, (id, (location, index)) of its blob
    delegates: list[tuple[str, object]] = field(default_factory=list)
    instructions: dict[str, int] = field(default_factory=dict)
    allocated: int = 0  # planned memory and tensors' logical sizes, in bytes

    def text(self) -> str:
        lines = [f"ExecuTorch program, schema version {self.version}"]
        for method in self.methods:
            lines.append(f"method {method}: {self.instructions.get(method, 0)} instructions")
            lines += [f"  calls {op}" for op in self.operators.get(method, [])]
        lines += [f"delegate {d}: {v}" for d, v in self.delegates]
        return "\n".join(lines) + "\n"


def _segments_end(data: bytes, reader: _Reader) -> tuple[int, int]:
    """(the flatbuffer's end, where segments start) from the extended header, if any."""
    if data[8:12] != b"eh00":
        return len(data), len(data)
    length, program_size, base = reader.scalar("I", 12), reader.scalar("Q", 16), reader.scalar("Q", 24)
    segment_size = reader.scalar("Q", 32) if length >= 32 else 0
    if length < 24 or program_size > len(data) or program_size < 40:
        reader.refuse(f"its extended header claims a program of {program_size} bytes in a file of {len(data)}")
    if base and (base < program_size or base > len(data) or base + segment_size > len(data)):
        reader.refuse(f"its extended header puts {segment_size} bytes of segments at {base}, outside its {len(data)} bytes")
    return program_size, base or len(data)


def summarize(data: bytes, what: str, delegates: frozenset, trusted: bool = False,
              extra_operators: frozenset = frozenset()) -> PteSummary:
    """The summary of a .pte; raises Refused where any of it lies outside the file, an index points
    nowhere, or (unless ``trusted``) an operator or delegate is not on the allowlists."""
    if len(data) < 16 or data[4:8] != IDENTIFIER:
        raise Refused(f"{what} is not an ExecuTorch program (no {IDENTIFIER.decode()} identifier at byte 4)")
    probe = _Reader(data, len(data), what)
    end, base = _segments_end(data, probe)
    reader = _Reader(data, end, what)
    program = reader.table(reader.scalar("I", 0))
    out = PteSummary(version=program.scalar(0, "I"))
    segments = [(t.scalar(0, "Q"), t.scalar(1, "Q")) for t in program.tables(4)]
    for offset, size in segments:
        if base + offset + size > len(data):
            reader.refuse(f"a data segment of {size} bytes at {offset} runs past the file's end")
    constant = program.table(5)
    if constant is not None and constant.scalar(0, "I") >= max(len(segments), 1) and segments:
        reader.refuse("its constant segment names a segment it does not have")
    buffers = len(program.tables(2)) + (len(constant.scalars(1, "Q")) if constant is not None else 0)
    inline = [b.vector(0, 1) for b in program.tables(3)]  # (start, size) of each inline blob
    named = {}
    for datum in program.tables(7):
        if datum.scalar(1, "I") >= len(segments):
            reader.refuse("a named datum points to a segment it does not have")
        named[datum.string(0)] = segments[datum.scalar(1, "I")][1]
    for plan in program.tables(1):
        _plan(plan, out, buffers, len(inline), len(segments), delegates, trusted, extra_operators)
    described: dict = {}  # each blob read once, however many delegate calls name it
    for ident, (location, index) in out.delegates:
        if (location, index) not in described:
            start, size = inline[index] if location == 0 else (base + segments[index][0], segments[index][1])
            out.allocated += pte_delegates.graph_bytes(_Reader, data, start, size, named, what)
            described[(location, index)] = pte_delegates.describe(data, start, size, what)
    out.delegates = [(ident, described[where]) for ident, where in out.delegates]
    return out


def _plan(plan: _Table, out: PteSummary, buffers: int, inline: int, segments: int, allowed: frozenset,
          trusted: bool, extra: frozenset) -> None:
    reader, name = plan.reader, plan.string(0)
    if not _METHOD.fullmatch(name):
        reader.refuse(f"a method is called {name!r}")
    out.methods.append(name)
    values = plan.tables(2)
    n = len(values)
    for v in values:
        out.allocated += _value(v, n, buffers)
    for index in plan.scalars(3, "i") + plan.scalars(4, "i"):
        _index(reader, index, n, "an input or output")
    operators = []
    for op in plan.tables(6):
        base, overload = op.string(0), op.string(1)
        if not _OPERATOR.fullmatch(base) or not _OVERLOAD.fullmatch(overload):
            reader.refuse(f"method {name} calls {base!r} (overload {overload!r}), not a namespace::name")
        operators.append(f"{base}.{overload}" if overload else base)
        why = None if trusted else refusal(base, extra)
        if why:
            reader.refuse(f"method {name} {why}")
    out.operators[name] = operators
    if plan.vector(7, 4)[1] > MAX_DELEGATES:  # counted before any is read
        reader.refuse(f"method {name} declares {plan.vector(7, 4)[1]} delegate calls (at most {MAX_DELEGATES})")
    delegates = plan.tables(7)
    for delegate in delegates:
        ident, processed = delegate.string(0), delegate.table(1)
        if not _METHOD.fullmatch(ident) or not trusted and ident not in allowed:
            reader.refuse(f"method {name} calls delegate {ident!r}, which is not on the delegate allowlist "
                          f"({', '.join(sorted(allowed)) or 'none'})")
        location, index = (processed.scalar(0, "b"), processed.scalar(1, "I")) if processed else (0, 0)
        if processed is None or index >= (inline if location == 0 else segments):
            reader.refuse(f"method {name}'s delegate {ident!r} points to data the program does not have")
        out.delegates.append((ident, (location, index)))
    planned = plan.scalars(8, "q")
    if any(size < 0 for size in planned):
        reader.refuse(f"method {name} plans a buffer of negative size")
    out.allocated += sum(planned)
    out.instructions[name] = 0
    for chain in plan.tables(5):
        for index in chain.scalars(0, "i") + chain.scalars(1, "i"):
            _index(reader, index, n, "a chain's input or output")
        instructions = chain.tables(2)
        out.instructions[name] += len(instructions)
        for instruction in instructions:
            _instruction(instruction, n, len(operators), len(delegates), len(instructions))


def _index(reader: _Reader, index: int, bound: int, what: str) -> None:
    if not 0 <= index < bound:
        reader.refuse(f"{what} names value {index} of {bound}")


def _value(value: _Table, values: int, buffers: int) -> int:
    """Check one EValue; the bytes a tensor of it stands for (its logical size)."""
    reader, kind = value.reader, value.scalar(0, "B")
    if kind == 0:
        return 0
    if kind not in _VALUE_TYPES:
        reader.refuse(f"a value has unknown type {kind}")
    body = value.table(1)
    if body is None:
        reader.refuse("a value has a type and no content")
    if kind in _TENSOR_LISTS:
        for index in body.scalars(0, "i"):
            if not (-1 if kind == _TENSOR_LISTS[1] else 0) <= index < values:  # -1: an optional's None
                reader.refuse(f"a tensor list names value {index} of {values}")
        return 0
    if kind != _TENSOR:
        if kind in (6, 7, 8, 9):  # a string, or a list of scalars: bounded by the vector check
            body.vector(0, {6: 1, 7: 8, 8: 8, 9: 1}[kind])
        return 0
    sizes = body.scalars(2, "i")
    if any(s < 0 for s in sizes) or len(sizes) > 16:
        reader.refuse(f"a tensor has sizes {sizes[:17]}")
    body.vector(3, 1)
    if body.scalar(5, "I") >= max(buffers, 1):
        reader.refuse(f"a tensor names constant buffer {body.scalar(5, 'I')} of {buffers}")
    numel = 1
    for s in sizes:
        numel *= s
    return numel * ELEMENT_BYTES.get(body.scalar(0, "b"), 8)


def _instruction(instruction: _Table, values: int, operators: int, delegates: int, instructions: int) -> None:
    reader, kind, body = instruction.reader, instruction.scalar(0, "B"), instruction.table(1)
    if body is None or kind not in (_KERNEL, _DELEGATE, _MOVE, _JUMP, _FREE):
        reader.refuse(f"an instruction has unknown type {kind}")
    if kind in (_KERNEL, _DELEGATE):
        target, bound = body.scalar(0, "i"), operators if kind == _KERNEL else delegates
        if not 0 <= target < bound:
            reader.refuse(f"an instruction calls {'operator' if kind == _KERNEL else 'delegate'} {target} of {bound}")
        for index in body.scalars(1, "i"):
            _index(reader, index, values, "an instruction's argument")
    elif kind == _MOVE:
        _index(reader, body.scalar(0, "i"), values, "a move")
        _index(reader, body.scalar(1, "i"), values, "a move")
    elif kind == _JUMP:
        _index(reader, body.scalar(0, "i"), values, "a jump's condition")
        _index(reader, body.scalar(1, "i"), instructions, "a jump's destination")
    else:
        _index(reader, body.scalar(0, "i"), values, "a free")


def vet_pte(data: bytes, what: str, trusted: bool, operators: frozenset, delegates: frozenset) -> int:
    """Refuse a .pte (Refused) that is malformed or calls what is not allowed; the bytes running it
    would allocate."""
    try:
        return summarize(data, what, delegates, trusted, operators).allocated
    except (struct.error, ValueError, OverflowError, IndexError) as exc:  # a form nobody anticipated
        raise Refused(f"{what}: a malformed ExecuTorch program ({type(exc).__name__}: {str(exc)[:120]})") from None
