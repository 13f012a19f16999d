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
- **Programs.** An ExecuTorch program (.pte) is walked whole by a bounded flatbuffer reader
  (harness.goldens.pte_file): offsets, counts and indices inside the file, its delegates on the
  stacks' allowlist, its planned memory counted as what it allocates.
- **Operators.** Every operator TorchScript code references, every method it calls, every
  operator a lite archive's bytecode lists, every kernel an ExecuTorch program calls and every target of a torch.export program must be on
  harness.goldens.operators' allowlist (derived from the catalog); what touches files, processes or
  global state is refused by name, anything unknown until it is added.

``trusted`` (the user's ``--trust-goldens`` for one run) waives the allowlists, never the bounds.
Why not picklescan or fickling: both are denylists of known-bad globals (this needs an
allowlist), and picklescan reports a stream it cannot parse as clean.
"""

from __future__ import annotations

import importlib
import pickletools
import re
import sys

from harness.goldens.archives import Archive, is_zip
from harness.goldens.exported import export_targets, read_json, vet_export
from harness.goldens.operators import refusal, torchscript_problem
from harness.goldens.pickles import TORCHSCRIPT_GLOBALS, Refused, Untrusted, data_allowed
from harness.goldens.pte_file import summarize, vet_pte
from harness.goldens.safetensors_file import vet_safetensors
from harness.goldens.streams import allowed_by, vet_data, vet_stream

MAX_FILE_BYTES = 64 << 20
#: the most a golden's tensors may add up to, at their logical sizes (numel x element size, a
#: stride-0 view counting in full): what loading and running it can make torch allocate for
#: them. The catalog's largest golden needs 5 MB.
MAX_TENSOR_BYTES = 1 << 30


#: Artifact kinds that hold code (or a program that names ops and classes to run). Each is vetted
#: as its kind, loaded only after its checksum matches the manifest, and has a text sidecar of
#: its code beside it (harness.goldens.layout.sidecar_name).
CODE_CARRYING = frozenset({"scripted", "traced", "package", "export", "lite", "pte"})
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



def _vet_torchscript(data: bytes, what: str, trusted: bool, operators: frozenset) -> int:
    archive = Archive(data, what)
    check = None if trusted else allowed_by(lambda n: data_allowed(n) or TORCHSCRIPT_GLOBALS.match(n))
    # data.pkl, constants.pkl, bytecode.pkl, *.debug_pkl: torch.jit.load unpickles them all
    allocated = sum(vet_stream(archive.read(name), f"{what}: {name}", check) for name in archive.named("pkl"))
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
    check = None if trusted else allowed_by(lambda n: data_allowed(n) or _module_class_allowed(n, interned))
    return sum(vet_stream(archive.read(name), f"{what}: {name}", check) for name in archive.named(".pkl"))


# -- what a golden embeds, as text for review --------------------------------------------------

def embedded_code(kind: str, data: bytes) -> str:
    """The code a golden of ``kind`` carries, as text: TorchScript code (``code/`` of a
    TorchScript or lite archive), a torch.package's extern list and interned sources, the ops a
    torch.export program calls, an ExecuTorch program's methods, kernels and delegates. Raises
    Refused when the file cannot be read."""
    parts = [f"# the code this {kind} golden carries; a change to it shows here, as text, for review\n"]
    if kind == "pte":
        return parts[0] + summarize(data, "the program", frozenset(), trusted=True).text()
    archive = Archive(data, "the archive")
    if kind == "package":
        _root, externs, sources = package_parts(archive)
        parts.append("## extern modules\n" + "".join(f"{m}\n" for m in sorted(externs)))
        for module, source in sorted(sources.items()):
            parts.append(f"## interned module {module}\n" + source.decode("utf-8", "replace"))
    elif kind == "export":
        targets = set()
        for name in archive.names():
            if name.endswith("model.json") or "exported_program" in name:
                targets |= export_targets(archive.read(name), name)
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
        allocated = vet_export(data, what, trusted, operators)
    elif kind == "pte":
        from harness import stacks

        allocated = vet_pte(data, what, trusted, operators, stacks.delegates())
    elif kind == "safetensors":
        from harness import stacks

        try:
            allocated = vet_safetensors(data, what, trusted, stacks.safetensors_types())
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # a form nobody anticipated
            raise Refused(f"{what}: a malformed safetensors header ({type(exc).__name__}: {str(exc)[:120]})") from None
    else:
        allocated = vet_data(data, what, trusted)
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
            program = read_json(archive.read(name), f"{archive.what}: {name}")
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
