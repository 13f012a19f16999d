"""Vetting a golden before anything loads it: bounded reading, and no code beyond allowlists.

A golden directory is untrusted input, and a manifest that vouches for a file's checksum says
only that nobody changed it by accident. So every golden is vetted statically before any loader
sees it, without importing or unpickling anything:

- **Bounds.** A file of at most ``MAX_FILE_BYTES``; an archive of at most ``MAX_MEMBERS``
  members whose declared sizes add up to at most ``MAX_INFLATED_BYTES``, each member read no
  further than its header declares. A golden can thus make the process hold at most about
  ``MAX_FILE_BYTES + MAX_INFLATED_BYTES`` at once (320 MiB), whatever it claims.
- **Pickles.** Every pickle inside the file (a torch.save stream, every ``*.pkl`` member of an
  archive, torch.package pickles, a .pt2's nested torch.save files and pickled constants) is
  disassembled with pickletools, and every global it names must be on the allowlist of its
  kind. A global whose name is computed at unpickling time cannot be checked and is refused.
- **torch.package.** Its extern modules must be on an allowlist; the Python source it interns
  must be byte-identical to a module this process has already imported (the catalog's fixtures,
  a user's test module), so replaying it runs no code that was not already running; its pickles
  may name classes from those modules and nn.Module classes of torch.
- **Operators.** Every operator TorchScript code references, every method it calls, every
  operator a lite archive's bytecode lists and every target of a torch.export program must be on
  harness.goldens.operators' allowlist (derived from the catalog); what touches files, processes or
  global state is refused by name, anything unknown until it is added.

``trusted`` (the user's ``--trust-goldens`` for one run) waives the allowlists, never the bounds.
Why not picklescan or fickling: both are denylists of known-bad globals (this needs an
allowlist), and picklescan reports a stream it cannot parse as clean.
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import sys

from harness import stacks
from harness.goldens.archives import MAX_INFLATED_BYTES, MAX_MEMBERS, Archive, is_zip
from harness.goldens.operators import export_operator, refusal, torchscript_problem
from harness.goldens.pickles import (TORCHSCRIPT_GLOBALS, Refused, Untrusted, check_globals, data_allowed, numel, pickle_globals,
                      tensor_bytes)

MAX_FILE_BYTES = 64 << 20
#: the most a golden's tensors may add up to, at their logical sizes (numel x element size, a
#: stride-0 view counting in full): what loading and running it can make torch allocate for
#: them. The catalog's largest golden needs 5 MB.
MAX_TENSOR_BYTES = 1 << 30


#: Artifact kinds that hold code (or a program that names ops and classes to run). Each is vetted
#: as its kind, loaded only after its checksum matches the manifest, and has a text sidecar of
#: its code beside it (harness.goldens.layout.sidecar_name).
CODE_CARRYING = frozenset({"scripted", "traced", "package", "export", "lite"})
#: the kinds that are TorchScript archives (torch.jit.load, the lite interpreter)
TORCHSCRIPT_KINDS = frozenset({"scripted", "traced", "lite"})


# -- allowlists --------------------------------------------------------------------------------

#: modules a torch.package may declare extern (imported from this process, not the archive)
_PACKAGE_EXTERNS = re.compile(r"(?:torch|harness|builtins|collections|typing)(?:\.[\w.]+)?$")

#: the modules whose nn.Module classes a torch.package pickle may name
_MODULE_CLASS_HOMES = re.compile(r"(?:torch\.(?:nn|ao\.nn|testing\._internal\.quantization_torch_package_models)"
                                 r"|harness)(?:\.[\w.]+)?$")
#: nn.Module classes that compile code of their own when built or unpickled
_COMPILING = ("GraphModule", "ScriptModule", "RecursiveScriptModule", "TopLevelTracedModule")



# -- pickles -------------------------------------------------------------------------------------


def torch_save_streams(data: bytes, what: str = "the file") -> list[bytes]:
    """The pickle streams of a torch.save file (bounded): the ``.pkl`` members of its zip
    archive, or the legacy format's leading pickles (magic number, protocol, sys info, payload)."""
    if is_zip(data):
        archive = Archive(data, what)
        return [archive.read(n) for n in archive.named(".pkl")]
    buffer, streams = io.BytesIO(data), []
    for _ in range(4):
        start = buffer.tell()
        try:
            for _op in pickletools.genops(buffer):
                pass
        except Exception as exc:
            raise Refused(f"{what} is not a readable torch.save file: {exc}") from None
        streams.append(data[start:buffer.tell()])
    return streams


class NotAdmitted(Refused):
    """A checkpoint naming a library class that the installed release does not register as safe
    to load: what ``torch.load(weights_only=True)`` itself would refuse. A load error of that
    checkpoint on this install (a finding), not a hostile file."""


def _check_data_globals(names: set[str], what: str) -> None:
    """Every global a data pickle names must be torch's weights_only built-ins, or a class of torch
    or of a stack's library (harness.stacks: its checkpoints name their own tensor subclasses) that
    this process's releases register as safe globals: weights_only loading admits exactly those."""
    outside = {n for n in names if not data_allowed(n)}
    if not outside:
        return
    owners = stacks.libraries()
    foreign = {n for n in outside if n.split(".", 1)[0] not in ("torch", *owners)}
    check_globals(foreign, lambda _n: False, what)  # refused without importing anything
    for library in {n.split(".", 1)[0] for n in outside} & set(owners):
        owners[library].library_problem(library)  # imports it where it can be: it registers its classes
    from harness.compat import registered_safe_globals  # imports torch: vetting is imported by the plugin, which must not

    unregistered = sorted(outside - registered_safe_globals())
    named_libraries = [n for n in unregistered if n.split(".", 1)[0] in owners]
    if named_libraries:
        first = named_libraries[0]
        library = first.split(".", 1)[0]
        version = owners[library].versions().get(library)
        named = first + (f" (and {len(named_libraries) - 1} more)" if len(named_libraries) > 1 else "")
        why = (f"which {library} {version} does not register as a safe global" if version
               else f"and {library} cannot be imported here to register it")
        raise NotAdmitted(f"weights_only loading refuses {what}: it names {named}, {why}")
    check_globals(set(unregistered), lambda _n: False, what)


def _pickle(stream: bytes, where: str, check) -> int:
    """Vet one pickle stream: its globals (``check(names, where)``, or None where the allowlists are
    waived) and then what it would allocate; returns its tensors' logical bytes."""
    found = pickle_globals(stream, where)
    if check is not None:
        check(found, where)
    return tensor_bytes(stream, where)[0]


def _allowed_by(allowed):
    """A ``check`` for _pickle from a predicate on one global's name."""
    return lambda found, where: check_globals(found, allowed, where)


def _vet_data(data: bytes, what: str, trusted: bool) -> int:
    check = None if trusted else _check_data_globals
    return sum(_pickle(stream, what, check) for stream in torch_save_streams(data, what))


def _vet_torchscript(data: bytes, what: str, trusted: bool, operators: frozenset) -> int:
    archive = Archive(data, what)
    check = None if trusted else _allowed_by(lambda n: data_allowed(n) or TORCHSCRIPT_GLOBALS.match(n))
    # data.pkl, constants.pkl, bytecode.pkl, *.debug_pkl: torch.jit.load unpickles them all
    allocated = sum(_pickle(archive.read(name), f"{what}: {name}", check) for name in archive.named("pkl"))
    if trusted:
        return allocated
    sources = {name: archive.read(name).decode("utf-8", "replace") for name in archive.named(".py")}
    problem = torchscript_problem(sources, operators)
    if problem:
        raise Untrusted(f"{what}: {problem}")
    for name in archive.names():
        if name.lower().endswith("bytecode.pkl"):  # the lite interpreter runs the operators its table lists
            for operator in sorted(_bytecode_operators(archive.read(name), f"{what}: {name}")):
                why = refusal(operator, operators)
                if why:
                    raise Untrusted(f"{what}: {name} {why}")
    return allocated


def _bytecode_operators(stream: bytes, what: str) -> set[str]:
    """The operator names (``namespace::name``) a lite archive's bytecode table lists."""
    try:
        return {arg for _op, arg, _pos in pickletools.genops(stream) if isinstance(arg, str) and "::" in arg}
    except Exception as exc:
        raise Refused(f"{what} is not a readable pickle: {exc}") from None


# -- torch.package -----------------------------------------------------------------------------

def _running_source(module_name: str) -> bytes | None:
    """The source of a module this process has imported from a file, or None."""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _module_class_allowed(name: str, interned: set[str]) -> bool:
    """A global naming an nn.Module class of torch (or of a verified interned module)."""
    module_name, _, attr = name.rpartition(".")
    if module_name in interned:
        return True
    if not _MODULE_CLASS_HOMES.match(module_name) or attr in _COMPILING or "__main__" in module_name:
        return False
    import torch

    # a module of torch's own may be imported (it runs torch's code, nothing of the golden's); any
    # other only if this process imported it already (importing harness.cli.__main__ would run the
    # command line)
    module = sys.modules.get(module_name)
    if module is None and module_name.startswith("torch."):
        import importlib

        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return False
    value = getattr(module, attr, None)
    return isinstance(value, type) and issubclass(value, torch.nn.Module) \
        and not any(base.__name__ in _COMPILING for base in value.__mro__)


def package_parts(archive: Archive) -> tuple[str, list[str], dict[str, bytes]]:
    """(the archive's root folder, its extern modules, interned module name -> source)."""
    names = archive.names()
    roots = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(roots) != 1:
        raise Refused(f"{archive.what} is not a torch.package archive (no single root folder)")
    root = roots.pop()
    # names as torch's reader matches them: case ignored
    extern = [n for n in names if n.lower() == f"{root}/.data/extern_modules".lower()]
    externs = archive.read(extern[0]).decode("utf-8", "replace").split() if extern else []
    sources = {}
    for name in names:
        inner = name[len(root) + 1:]
        if inner.lower().endswith(".py") and not inner.lower().startswith(".data/"):
            module = inner[:-3].replace("/", ".")
            sources[module.removesuffix(".__init__")] = archive.read(name)
    return root, externs, sources


def _vet_package(data: bytes, what: str, trusted: bool) -> int:
    archive = Archive(data, what)
    root, externs, sources = package_parts(archive)
    if not trusted:
        bad = [m for m in externs if not _PACKAGE_EXTERNS.match(m)]
        if bad:
            raise Untrusted(f"{what} declares module {bad[0]} extern, which is not on the allowlist")
        for module, source in sorted(sources.items()):
            if _running_source(module) != source:
                raise Untrusted(f"{what} carries Python source for {module} that matches no module this "
                              "process runs")
    interned = set(sources)
    check = None if trusted else _allowed_by(lambda n: data_allowed(n) or _module_class_allowed(n, interned))
    return sum(_pickle(archive.read(name), f"{what}: {name}", check) for name in archive.named(".pkl"))


# -- torch.export ------------------------------------------------------------------------------

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


def _json(data: bytes, what: str):
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
        config = _json(archive.read(name), where)
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


def _export_targets(text: bytes, what: str) -> set[str]:
    found, todo = set(), [_json(text, what)]
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
    """The pickle streams a member holds for torch to load: a torch.save zip's, or the consecutive
    pickles from its start (a legacy torch.save's four, or one). A member that is neither is refused."""
    if is_zip(member):
        return torch_save_streams(member, what)
    buffer, streams = io.BytesIO(member), []
    while len(streams) < 4 and buffer.tell() < len(member):
        start = buffer.tell()
        try:
            for _op in pickletools.genops(buffer):
                pass
        except Exception:
            buffer.seek(start)
            break
        streams.append(member[start:buffer.tell()])
    if not streams:
        raise Refused(f"{what} is neither raw tensor data its payload config names nor a pickle")
    return streams


def _vet_export(data: bytes, what: str, trusted: bool, operators: frozenset) -> int:
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
            problem = _program_problem(_json(member, where), where, trusted, operators)
            if problem:
                raise Untrusted(f"{where} {problem}")
            continue
        check = None if trusted else _check_data_globals
        allocated += sum(_pickle(stream, where, check) for stream in _pickles_in(member, where))
    return allocated


# -- what a golden embeds, as text for review --------------------------------------------------

def embedded_code(kind: str, data: bytes) -> str:
    """The code a golden of ``kind`` carries, as text: TorchScript code (``code/`` of a
    TorchScript or lite archive), a torch.package's extern list and interned sources, the ops a
    torch.export program calls. Raises Refused when the archive cannot be read."""
    archive = Archive(data, "the archive")
    parts = [f"# the code this {kind} golden carries; a change to it shows here, as text, for review\n"]
    if kind == "package":
        _root, externs, sources = package_parts(archive)
        parts.append("## extern modules\n" + "".join(f"{m}\n" for m in sorted(externs)))
        for module, source in sorted(sources.items()):
            parts.append(f"## interned module {module}\n" + source.decode("utf-8", "replace"))
    elif kind == "export":
        targets = set()
        for name in archive.names():
            if name.endswith("model.json") or "exported_program" in name:
                targets |= _export_targets(archive.read(name), name)
        parts.append("## ops the program calls\n" + "".join(f"{t}\n" for t in sorted(targets)))
    else:
        for name in sorted(archive.names()):
            inner = name.split("/", 1)[-1]
            if inner.startswith("code/") and inner.endswith(".py"):
                parts.append(f"## {inner}\n" + archive.read(name).decode("utf-8", "replace"))
    return "\n".join(p if p.endswith("\n") else p + "\n" for p in parts)


# -- the one entry point -----------------------------------------------------------------------

def vet(kind: str, data: bytes, what: str, *, trusted: bool = False, operators: frozenset = frozenset(),
        claimed: str | None = None) -> None:
    """Refuse ``data`` (raise Refused) unless a golden of ``kind`` may be loaded as it is.

    ``kind`` is an artifact kind, or "data" for inputs, expected outputs and other torch.save
    files. ``trusted`` waives the allowlists (never the bounds or the checks of form);
    ``operators``: the project's own additions to harness.goldens.operators' allowlist; ``claimed``: the
    torch release its golden set says made it, which its archive's records must agree with.
    """
    if len(data) > MAX_FILE_BYTES:
        raise Refused(f"{what} is {len(data)} bytes (at most {MAX_FILE_BYTES} are read)")
    if kind in TORCHSCRIPT_KINDS:
        allocated = _vet_torchscript(data, what, trusted, operators)
    elif kind == "package":
        allocated = _vet_package(data, what, trusted)
    elif kind == "export":
        allocated = _vet_export(data, what, trusted, operators)
    else:
        allocated = _vet_data(data, what, trusted)
    if claimed is not None and is_zip(data):
        _check_writer(kind, Archive(data, what), claimed)
    if allocated > MAX_TENSOR_BYTES:
        allocated = min(allocated, 1 << 62)
        raise Refused(f"{what} would need {_gib(allocated)} for its tensors when loaded and run (their logical "
                      f"sizes: a view of a few bytes can stand for gigabytes); at most {_gib(MAX_TENSOR_BYTES)} "
                      "are allowed")


def _check_writer(kind: str, archive: Archive, claimed: str) -> None:
    """The records of an archive must be those the release its set claims writes (harness.compat):
    a set moved to another release's directory, manifest and all, is refused."""
    from harness.compat import written_by_problem

    if kind == "export":
        schema = None
        for name in archive.named("models/model.json", "serialized_exported_program.json"):
            program = _json(archive.read(name), f"{archive.what}: {name}")
            version = program.get("schema_version") if isinstance(program, dict) else None
            if isinstance(version, dict) and all(isinstance(version.get(k), int) for k in ("major", "minor")):
                schema = (version["major"], version["minor"])
        problem = written_by_problem(claimed, None, schema)
    else:  # the records torch writes at the archive's root folder (<root>/byteorder), and only there
        problem = written_by_problem(claimed, {n.split("/", 1)[1].lower() for n in archive.names()
                                               if n.count("/") == 1}, None)
    if problem:
        raise Refused(f"{archive.what} does not come from the release its set names: {problem}")


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n >= 1 << 26 else f"{n / (1 << 20):.3g} MiB"
