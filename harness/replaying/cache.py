"""The result cache: a unit's results (one case of one golden version) kept under the digest of
everything that decides them, so that a replay with nothing changed replays nothing.

A unit's key is the SHA-256 of two parts:

- the run's **context**: the harness's own files, the builds of torch and of each stack's
  libraries (version, git revision, the digest of the wheel's RECORD), the machine fingerprint
  (harness.machine: CPU, ISA, torch's CPU capability, BLAS and oneDNN), torch's thread count and
  the environment variables that choose kernels or threads, the run's Options (the known drifts
  included) and every file of the case catalog;
- the **unit's** inputs: its golden version and case, whether the catalog declares the case, the
  manifest's header and its entry for the case, and the name and bytes of every file under the
  case's directory (read here, not taken from the manifest: a file that no longer matches its
  manifest must give its verdict again).

A change in any of these replays exactly the units it touches. What cannot be keyed by content is
never kept: a unit whose directory holds anything but plain files and directories (a link, a FIFO)
or a file past vetting's size limit, a unit that names a whole set (``*``), and a unit with a
``crash`` result that the machine's state may have caused: a hang stopped by the timeout, a
SIGKILL (the memory limit, the system), an exit status, a worker given up. A crash by a fault
signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) is the code's on this machine, and is kept.

Entries are JSON (no code) under the user's cache directory (``BC_HARNESS_CACHE_DIR``, else
``$XDG_CACHE_HOME/bc-harness/results``), never in a golden directory. The CLI reads and writes it
unless told ``--no-cache`` or run in CI (harness.config.ci_environment); the plugin does not use it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import stat
import time
from pathlib import Path

from harness.config import cache_home
from harness.goldens.layout import case_of
from harness.replaying.results import Result
from harness.verdicts import Verdict

#: the format of keys and entries; raised when either changes meaning
FORMAT = 1
#: environment variables read by torch or its libraries that choose kernels or thread counts
_ENV_PREFIXES = ("ATEN_", "OMP_", "MKL_", "KMP_", "DNNL_", "ONEDNN_", "TORCH_", "PYTORCH_", "ET_", "XNNPACK_",
                 "BC_HARNESS_")  # the worker's memory limit decides whether a load fails
#: where the cache is, which decides no result
_NOT_ENVIRONMENT = ("BC_HARNESS_CACHE_DIR",)
#: Options fields that decide no result's verdict or figures: which units run (the -k
#: patterns, --golden, forward replay; a unit's results do not depend on which others run), and
#: the timeout (a result cut short by it is a crash, and crashes are not kept)
_NOT_DECIDING = ("patterns", "versions", "forward", "result_timeout")
#: the causes of a crash (harness.sandbox.cause_of, in the result's message) that the code gives on
#: this machine whatever its load: such a crash is kept like any verdict
_FAULTS = ("SIGSEGV (", "SIGBUS (", "SIGILL (", "SIGFPE (", "SIGABRT (")
#: an entry unused this long is removed at the end of a run that used the cache
_UNUSED_DAYS = 30


def directory() -> Path:
    return Path(os.environ.get("BC_HARNESS_CACHE_DIR") or cache_home() / "results")


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()


def _tree(root: Path, suffixes: tuple[str, ...] | None = None) -> str | None:
    """The digest of every plain file's name and bytes under ``root`` (of ``suffixes`` only, if
    given; ``__pycache__`` left out), "absent" where there is nothing at ``root``; None where
    ``root`` or anything under it is neither a plain file nor a directory (a link is not followed),
    something changes while it is read, or a file is larger than vetting reads. Walked with a
    stack of its own: a tree of any depth gives an answer."""
    from harness.goldens.vetting import MAX_FILE_BYTES

    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            return None
    except FileNotFoundError:
        return "absent"
    except OSError:
        return None
    h = hashlib.sha256()
    todo = [(root, "")]
    while todo:
        folder, prefix = todo.pop()
        try:
            entries = sorted(((e.name, e.path, e.stat(follow_symlinks=False).st_mode) for e in os.scandir(folder)),
                             reverse=True)
        except OSError:  # unreadable, or changed while listed
            return None
        for name, path, mode in entries:
            if name == "__pycache__":
                continue
            if stat.S_ISDIR(mode):
                h.update(f"{prefix}{name}/\0".encode())
                todo.append((Path(path), f"{prefix}{name}/"))
            elif not stat.S_ISREG(mode):
                return None
            elif suffixes is None or name.endswith(suffixes):
                data = _plain_bytes(Path(path), MAX_FILE_BYTES)
                if data is None:
                    return None
                h.update(f"{prefix}{name}\0{len(data)}\0".encode())
                h.update(data)
    return h.hexdigest()


def _plain_bytes(path: Path, limit: int) -> bytes | None:
    """A plain file's bytes, opened without following a link or blocking on a FIFO swapped in."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


@functools.cache
def _harness_files() -> str:
    import harness

    return _tree(Path(harness.__file__).parent, (".py", ".so", ".pyd")) or "unreadable"


def builds() -> dict:
    """Which build of torch and of each stack's libraries this process runs: version, git
    revision (torch), and the digest of the installed files' list (the wheel's RECORD). Read from
    the installed metadata: a library is not imported for it (importing one takes seconds)."""
    from importlib import metadata

    from harness import stacks
    from harness.compat import torch_build

    found = {"torch build": torch_build()}
    for name in ("torch", *sorted(stacks.libraries())):
        try:
            dist = metadata.distribution(name)
            found[name] = [dist.version, hashlib.sha256((dist.read_text("RECORD") or "").encode()).hexdigest()]
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def context(options, fixtures: Path | None) -> str:
    """The digest of what decides every result of this run (see the module's docstring)."""
    import torch

    from harness import machine

    chosen = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name not in _NOT_DECIDING}
    chosen["known"] = [dataclasses.asdict(k) if dataclasses.is_dataclass(k) else repr(k) for k in chosen["known"]]
    return _digest({"format": FORMAT, "harness": _harness_files(), "builds": builds(), "machine": machine.current(),
                    "threads": torch.get_num_threads(),
                    "environment": {k: v for k, v in os.environ.items()
                                    if k.startswith(_ENV_PREFIXES) and k not in _NOT_ENVIRONMENT},
                    "options": chosen, "catalog": _tree(fixtures, (".py", ".toml", ".json", ".txt")) if fixtures else None})


def unit_key(run_context: str, golden, case_directory: Path, case: str, in_catalog: bool) -> str | None:
    """The key of one unit (``case`` of the GoldenSet ``golden``, whose files are under
    ``case_directory``), or None where it is not to be kept."""
    if case == "*" or golden.manifest is None:
        return None
    files = _tree(case_directory)
    if files is None:
        return None
    manifest = golden.manifest
    entry = manifest.cases.get(case)
    header = {k: v for k, v in manifest.info.items() if k not in ("created", "command")}
    vouched = {name: value for name, value in manifest.files.items() if case_of(name) == case}
    # the entry as read, with what the planner found wrong with it (its fields, not its JSON)
    fields = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)} if entry is not None else None
    try:
        return _digest({"context": run_context, "version": golden.version, "case": case, "in_catalog": in_catalog,
                        "header": header, "pinned": manifest.pinned, "format": manifest.format,
                        "count": [manifest.golden_files, len(manifest.files)], "removed": manifest.removed.get(case),
                        "entry": fields, "vouched": vouched, "files": files})
    except (ValueError, TypeError, RecursionError):  # a manifest value no key can be made of: replayed every time
        return None


class ResultCache:
    """Entries of unit results under ``root``, one JSON file per key."""

    def __init__(self, root: Path, run_context: str):
        self.root, self.context = Path(root), run_context
        self.hits = self.forward_hits = self.stored = 0  # results; forward: of goldens newer than this torch

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str | None) -> list[Result] | None:
        """The results kept under ``key``, or None (nothing kept, or an entry this version cannot read)."""
        if key is None:
            return None
        path = self._path(key)
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            results = [Result(**row) for row in rows]
        except (OSError, ValueError, TypeError):
            return None
        try:
            os.utime(path)  # used: kept from pruning
        except OSError:
            pass
        forward = sum(1 for r in results if r.forward)
        self.hits, self.forward_hits = self.hits + len(results) - forward, self.forward_hits + forward
        return results

    def put(self, key: str | None, results: list[Result]) -> None:
        """Keep ``results`` under ``key``, unless one is a crash the machine's state may have
        caused (see the module); a cache that cannot be written is no error (the run's results stand)."""
        if key is None or any(r.verdict == Verdict.CRASH and not any(f in r.message for f in _FAULTS)
                              for r in results):
            return
        path = self._path(key)
        rows = [{**dataclasses.asdict(r), "verdict": str(r.verdict.value)} for r in results]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(rows), encoding="utf-8")
            os.replace(temporary, path)
        except OSError:
            return
        self.stored += len(results)

    def prune(self) -> None:
        """Remove entries unused for _UNUSED_DAYS (only this cache's own files)."""
        cutoff = time.time() - _UNUSED_DAYS * 86400
        for path in self.root.glob("??/*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass
