"""Goldens that depend on nothing but the model: the parts of torch's archives that record where and
how a process ran are dropped before a golden is written.

A TorchScript or lite archive carries ``*.debug_pkl`` records: the source ranges of the code it was
compiled from, with the absolute path of each source file (the checkout's, the environment's) and
its line numbers (a harness upgrade, an edit above a test's model). A torch.export program's nodes
carry ``stack_trace``, the same kind of record. Goldens written with them change when a checkout
moves or a line is added elsewhere; so they are dropped (torch loads and runs the archives without
them: they are debug information only), and the archive is written again member by member, in
torch's order, with fixed timestamps and a serialization id drawn from its members (torch's own
mixes in a number drawn per process). What TorchScript numbers per process (``___torch_mangle_N``)
is made reproducible by writing each golden in a process of its own (harness.making.generate).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

#: a fixed member timestamp (zip's earliest), so equal members give equal bytes
_EPOCH = (1980, 1, 1, 0, 0, 0)


def reproducible(kind: str, data: bytes) -> bytes:
    """``data`` (an artifact of ``kind`` as torch saved it) without the records of its making."""
    if kind in ("scripted", "traced", "lite"):
        return _rewrite(data, lambda name, body: None if name.endswith(".debug_pkl") else body)
    if kind == "export":
        return _rewrite(data, _without_stack_traces)
    return data


def _without_stack_traces(name: str, body: bytes) -> bytes:
    if not name.endswith((".json",)) or b"stack_trace" not in body:
        return body
    try:
        program = json.loads(body)
    except ValueError:
        return body
    todo = [program]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            item.pop("stack_trace", None)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return json.dumps(program).encode()


#: torch's record of which writer made an archive: half a checksum of the records (the debug
#: records this module drops included), half a number drawn per process; seen differing between
#: two processes writing the same model
_SERIALIZATION_ID = ".data/serialization_id"


def _rewrite(data: bytes, change) -> bytes:
    """The archive again, each member through ``change(name, bytes)`` (None: left out), its
    serialization id drawn from what it keeps (40 digits, as torch writes one)."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members = [(info.filename, change(info.filename, source.read(info.filename))) for info in source.infolist()]
    kept = [(name, body) for name, body in members if body is not None]
    digest = hashlib.sha256()
    for name, body in kept:
        if not name.endswith(_SERIALIZATION_ID):
            digest.update(len(name).to_bytes(8, "little") + name.encode() + len(body).to_bytes(8, "little") + body)
    made_here = str(int.from_bytes(digest.digest()[:17], "big") % 10 ** 40).zfill(40).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for name, body in kept:
            body = made_here if name.endswith(_SERIALIZATION_ID) else body
            target.writestr(zipfile.ZipInfo(name, date_time=_EPOCH), body)
    return out.getvalue()
