"""Vetting a safetensors golden: its header read the one way, bounded, before safetensors reads it.

A safetensors file is an 8-byte little-endian header length, a JSON header, then the tensors'
bytes. The header names each tensor's dtype, shape and byte range, and may carry ``__metadata__``,
a table of strings; a library that stores tensor subclasses this way (a stack's library, through
its own flattening) writes in it, as JSON, each subclass's type and the types of
its attributes (``{"_type": "Int8Tensor", "_data": {...}}``). Vetting refuses:

- a header longer than ``MAX_HEADER_BYTES`` or past the end of the file, that is not a JSON object,
  or that names one key twice (two readers could take different ones);
- a tensor of an unknown dtype, a shape that is not a list of sizes, byte ranges that do not tile
  the data exactly (overlapping, leaving gaps, past the end) or that disagree with the shape;
- metadata that is not a table of strings, and any ``_type`` named in it that is not on the
  allowlist: torch's plain names and the types the registered stacks declare
  (harness.stacks ``safetensors_types``), so a golden cannot make a library build an object of a
  class nobody vetted. ``trusted`` waives that allowlist, never the bounds or the form.

Returns the tensors' bytes (what loading allocates); nothing is imported or parsed by safetensors
before this passes.
"""

from __future__ import annotations

import json
import math
import struct

from harness.goldens.pickles import Refused, Untrusted

#: the longest header read (the catalog's largest is 4 KiB; safetensors itself allows 100 MB)
MAX_HEADER_BYTES = 1 << 20
#: safetensors' dtype names and their element sizes in bytes
DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
          "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: what metadata may name as ``_type`` whatever the stacks: a plain tensor and a torch dtype
PLAIN_TYPES = frozenset({"Tensor", "torch.Tensor", "torch.dtype"})


def _unique(pairs):
    seen = set()
    for key, _ in pairs:  # linear: a header of 100k keys is checked as fast as it is read
        if key in seen:
            raise ValueError(f"the key {key[:80]!r} appears twice")
        seen.add(key)
    return dict(pairs)


def _json(text: bytes | str, what: str):
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except (ValueError, RecursionError) as exc:
        raise Refused(f"{what}: {type(exc).__name__}: {str(exc)[:120]}") from None


def header(data: bytes, what: str) -> tuple[dict, dict, int]:
    """(tensors' entries, metadata, where the data starts) of a safetensors file, its form checked."""
    if len(data) < 8:
        raise Refused(f"{what} is {len(data)} bytes: too short for a safetensors header")
    size = struct.unpack("<Q", data[:8])[0]
    if size > MAX_HEADER_BYTES or 8 + size > len(data):
        raise Refused(f"{what}: its header claims {size} bytes (at most {MAX_HEADER_BYTES}, within the file's "
                      f"{len(data)})")
    table = _json(data[8:8 + size], f"{what}: its header")
    if not isinstance(table, dict):
        raise Refused(f"{what}: its header is not a JSON object")
    metadata = table.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise Refused(f"{what}: its __metadata__ is not a table of strings")
    return table, metadata, 8 + size


def _tensor_bytes(name: str, entry, what: str) -> tuple[int, int, int]:
    """(begin, end, bytes the shape needs) of one tensor entry, its form checked."""
    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str) or entry["dtype"] not in DTYPES:
        raise Refused(f"{what}: tensor {name[:80]!r} has no known dtype")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or len(shape) > 16 or not all(type(n) is int and 0 <= n < 1 << 40 for n in shape):
        raise Refused(f"{what}: tensor {name[:80]!r} has a malformed shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int and n >= 0 for n in offsets)
            and offsets[0] <= offsets[1]):
        raise Refused(f"{what}: tensor {name[:80]!r} has malformed data_offsets")
    return offsets[0], offsets[1], math.prod(shape) * DTYPES[entry["dtype"]]


def named_types(metadata: dict, what: str) -> set[str]:
    """Every ``_type`` the metadata's JSON values name, at any depth. A value is JSON exactly when
    Python's json reads it (as a library reading the metadata would, white space and all); such a
    value is read again strictly (no key twice), so what is vetted is what the library builds."""
    found, todo = set(), []
    for key, value in metadata.items():
        try:
            json.loads(value)
        except (ValueError, RecursionError):
            continue  # not JSON: a plain string, which names no type
        todo.append(_json(value, f"{what}: metadata {key[:80]!r}"))
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if "_type" in item:
                found.add(item["_type"] if isinstance(item["_type"], str) else repr(item["_type"]))
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return found


def vet_safetensors(data: bytes, what: str, trusted: bool, allowed_types: frozenset) -> int:
    """Refuse (raise Refused or Untrusted) a safetensors golden that is malformed or names a type
    off the allowlist; returns its tensors' bytes."""
    tensors, metadata, start = header(data, what)
    ranges = sorted(_tensor_bytes(name, entry, what) + (name,) for name, entry in tensors.items())
    at = 0
    for begin, end, needed, name in ranges:
        if begin != at or end - begin != needed:
            raise Refused(f"{what}: tensor {name[:80]!r}'s bytes ({begin}..{end}) do not follow the one before "
                          f"({at}) or do not match its shape ({needed} bytes)")
        at = end
    if start + at != len(data):
        raise Refused(f"{what}: its tensors cover {at} bytes of the {len(data) - start} after its header")
    unknown = sorted(named_types(metadata, what) - PLAIN_TYPES - allowed_types)
    if unknown and not trusted:
        raise Untrusted(f"{what}: its metadata names the type {unknown[0][:80]!r}, which is not on the allowlist "
                        "of types a safetensors golden may build (harness.stacks' safetensors_types)")
    return at
