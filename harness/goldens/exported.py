"""Vetting a torch.export archive (.pt2) as torch.export reads it: JSON programs and payload
configs (no guard code, symbolic sizes that are plain arithmetic, operators on the allowlist),
raw tensor bytes where a config says so, and every other member as pickles, vetted as data.
"""

from __future__ import annotations

import io
import json
import pickletools
import re

from harness.goldens.archives import Archive, is_zip
from harness.goldens.operators import export_operator, refusal
from harness.goldens.pickles import Refused, Untrusted, numel
from harness.goldens.streams import LEGACY_MAGIC, check_data_globals, torch_save_streams, vet_stream


#: .pt2 members that hold a version or a format's name: text nothing loads as data
_EXPORT_RECORDS = ("version", "byteorder", "archive_format", "archive_version", "serialization_id")
#: a symbolic size torch.export's reader hands to sympy.sympify, which evaluates it: only symbols,
#: integers, arithmetic and the functions of torch.utils._sympy the reader itself supplies
_SYMBOLIC = re.compile(r"^(?:[\s\d()+\-*/%,]|[su]\d+|\b(?:FloorDiv|ModularIndexing|Where|PythonMod|Mod|CleanDiv|"
                       r"CeilToInt|FloorToInt|CeilDiv|LShift|RShift|IsNonOverlappingAndDenseIndicator|TruncToFloat|"
                       r"TruncToInt|RoundToInt|RoundDecimal|ToFloat|FloatPow|PowByNatural|IntTrueDiv|FloatTrueDiv|"
                       r"Identity|Max|Min|Abs|Eq|Ne|Lt|Le|Gt|Ge|And|Or|Not)\b)*$")
def logical_bytes(sizes, item: int, what: str) -> int:
    """The bytes of a tensor of ``sizes`` elements of ``item`` bytes (harness.goldens.pickles' rule: a size
    that is not a short list of non-negative integers is a refusal, not a number)."""
    try:
        return min(numel(sizes) * item, 1 << 62)
    except ValueError as exc:
        raise Refused(f"{what} declares {exc}") from None


def read_json(data: bytes, what: str):
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise Refused(f"{what} is not readable JSON: {type(exc).__name__}") from None


def _raw_members(archive: Archive) -> tuple[set[str], int]:
    """(the members the payload configs say hold raw tensor bytes, the logical bytes of every tensor
    the configs describe: each entry counted, at 8 bytes an element, the dtype being an enum of the
    writer's schema)."""
    raw, total = set(), 0
    for name in archive.named("_config.json"):
        where = f"{archive.what}: {name}"
        config = read_json(archive.read(name), where)
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict) or not all(isinstance(e, dict) and isinstance(e.get("path_name"), str)
                                                    for e in entries.values()):
            raise Refused(f"{where} is not a payload config (a table of entries, each with a path_name)")
        folder = name.rsplit("/", 1)[0]
        for entry in entries.values():
            meta = entry.get("tensor_meta") or {}
            sizes = meta.get("sizes", []) if isinstance(meta, dict) else None
            if not isinstance(sizes, list) or not all(isinstance(n, dict) and set(n) == {"as_int"} for n in sizes):
                raise Refused(f"{where}: {entry['path_name']} declares a size that is not a list of integers")
            total += logical_bytes([n["as_int"] for n in sizes], 8, where)
            if entry.get("use_pickle") is False:
                raw.add(f"{folder}/{entry['path_name']}")
    return raw, total


def _program_problem(program, what: str, trusted: bool, operators: frozenset) -> str | None:
    """Why a program's JSON may not be read by torch.export: code it evaluates (guards, symbolic
    sizes sympy evaluates) and, unless trusted, operators off the allowlist."""
    todo = [program]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if item.get("guards_code"):
                return "carries guard code, which torch.export compiles and runs"
            expression = item.get("expr_str")
            if expression is not None and (not isinstance(expression, str) or not _SYMBOLIC.match(expression)):
                return f"carries a symbolic size that is not plain arithmetic: {str(expression)[:60]!r}"
            if not trusted and isinstance(item.get("target"), str):
                why = refusal(export_operator(item["target"]), operators)
                if why:
                    return why
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return None


def export_targets(text: bytes, what: str) -> set[str]:
    found, todo = set(), [read_json(text, what)]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if isinstance(item.get("target"), str):
                found.add(item["target"])
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return found


def _pickles_in(member: bytes, what: str) -> list[bytes]:
    """The pickle streams a member holds for torch to load (torch.load, which falls back to
    ``weights_only=False`` here): a torch.save zip's; a legacy torch.save's (its first pickle the
    magic number: every pickle its reader loads, or refused); else the one pickle at its start,
    which torch loads before it finds no magic number and stops. A member that is none of these
    is refused."""
    if is_zip(member):
        return torch_save_streams(member, what)
    buffer = io.BytesIO(member)
    try:
        first = [arg for _op, arg, _pos in pickletools.genops(buffer)]
    except Exception:
        raise Refused(f"{what} is neither raw tensor data its payload config names nor a pickle") from None
    if LEGACY_MAGIC in first:
        return torch_save_streams(member, what)
    return [member[:buffer.tell()]]


def vet_export(data: bytes, what: str, trusted: bool, operators: frozenset) -> int:
    """Every member of a .pt2 is read as torch.export reads it: JSON programs and configs (no code,
    allowed operators), raw tensor bytes where a config says so, and everything else as pickles
    (torch loads them, falling back to weights_only=False), vetted as data."""
    archive = Archive(data, what)
    raw, allocated = _raw_members(archive)
    for name in archive.names():
        where = f"{what}: {name}"
        if name in raw or name.rsplit("/", 1)[-1].lower() in _EXPORT_RECORDS:
            continue
        member = archive.read(name)
        if name.lower().endswith(".json"):
            problem = _program_problem(read_json(member, where), where, trusted, operators)
            if problem:
                raise Untrusted(f"{where} {problem}")
            continue
        check = None if trusted else check_data_globals
        allocated += sum(vet_stream(stream, where, check) for stream in _pickles_in(member, where))
    return allocated


