"""GoldenStore: the golden directory and its manifests; the only code that writes under it.

Layout: ``<root>/<torch release>/manifest.json`` and ``<root>/<torch release>/<case id>/<file>``.
Every file is written atomically (temporary file, fsync, rename, fsync of the directory)
and the manifest, which holds every file's sha256 and size, is written last.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from harness.goldens.atomic import atomic_write, exchange, fsync_dir, fsync_tree, link_tree
from harness.goldens.files import Unreadable, read_inside
from harness.catalog import valid_case_id
from harness.goldens.layout import case_dir, sidecar_name
from harness.goldens.manifest import NAME as MANIFEST
from harness.versions import canonical_set_name, parse_version, version_key
from harness.goldens.manifest import Manifest, ManifestError, file_problem
from harness.verdicts import Verdict


class GoldenError(Exception):
    """A golden file cannot be used; ``verdict`` says how the result is to be reported."""

    verdict = Verdict.CORRUPT


class MissingGolden(GoldenError):
    verdict = Verdict.MISSING


class CorruptGolden(GoldenError):
    verdict = Verdict.CORRUPT


class UnloadableGolden(GoldenError):
    """A sound file that this install refuses to load safely (a checkpoint naming a library's
    class that the installed release of that library does not register): a load error of this release, not a corrupt file."""

    verdict = Verdict.LOAD_ERROR


class GoldenExists(Exception):
    """Refusal to overwrite a golden without --force."""


def stray_problem(directory: Path) -> str:
    """Why a directory of the store that is named like no torch version is a problem."""
    shown = str(directory) if str(directory).isprintable() else ascii(str(directory))  # no terminal control codes
    return (f"{shown} is not named like a golden set (a torch release in its normal form, e.g. 2.13.0, or "
            "2.13.0+lib.1.0 labelled with a library's release), so none of its goldens are replayed; rename it to "
            "the release that made it, or remove it")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: the largest manifest that is read (the committed store's largest is ~0.2 MiB)
MAX_MANIFEST_BYTES = 16 << 20


def _read(root: Path, name: str, limit: int, expected: int | None = None) -> bytes:
    """A file of a golden directory as harness.goldens.files reads it; MissingGolden or CorruptGolden else."""
    try:
        return read_inside(root, name, limit, expected)
    except Unreadable as exc:
        raise (MissingGolden if exc.missing else CorruptGolden)(str(exc)) from None


@dataclass
class GoldenSet:
    """One directory of goldens and the manifest that vouches for its files.

    ``read`` returns a file's bytes only after checking them against the manifest and vetting
    them (harness.goldens.vetting), so the bytes that are loaded are the bytes that were checked. Where
    a directory has no manifest (a foreign layout that was never pinned), data files may still
    be read, as they are loaded with weights_only; code-carrying files are refused unless
    ``trust_unverified``. ``trust_code`` (the user's --trust-goldens) waives vetting's allowlists.
    """

    root: Path
    version: str
    manifest: Manifest | None = None
    manifest_error: str | None = None
    trust_unverified: bool = False
    trust_code: bool = False
    #: the project's own additions to the operator allowlist (harness.goldens.operators)
    operators: frozenset = frozenset()
    _hashes: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: Path, version: str, *, required: bool = True, trust_unverified: bool = False,
             trust_code: bool = False, unsealed_ok: bool = False, operators: frozenset = frozenset()):
        gs = cls(Path(root), version, trust_unverified=trust_unverified, trust_code=trust_code,
                 operators=frozenset(operators))
        path = gs.root / MANIFEST
        if gs.root.is_symlink():
            gs.manifest_error = f"{gs.root} is a symbolic link; nothing below a golden store's root is followed"
            return gs
        try:
            text = _read(gs.root, MANIFEST, MAX_MANIFEST_BYTES).decode("utf-8")
            gs.manifest = Manifest.parse(text)
        except MissingGolden:
            if required:
                gs.manifest_error = f"{path} is missing"
            return gs
        except (UnicodeDecodeError, ManifestError, GoldenError) as exc:
            gs.manifest_error = f"{path} is unreadable: {exc}"
            return gs
        # a release directory's manifest must name that release, pinned or not; a foreign directory
        # (PyTorch's flat layout) is named by no release
        claimed = version if parse_version(version) is not None else None
        problem = gs.manifest.set_problem(claimed, unsealed_ok=unsealed_ok)
        if problem:
            gs.manifest, gs.manifest_error = None, f"{path} cannot be trusted: {problem}"
        return gs

    @property
    def files(self) -> dict:
        return self.manifest.files if self.manifest is not None else {}

    @property
    def cases(self) -> dict:
        """case id -> harness.goldens.manifest.CaseEntry"""
        return self.manifest.cases if self.manifest is not None else {}

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def read(self, name: str, *, kind: str = "data") -> bytes:
        """The verified, vetted bytes of ``name``, holding an artifact of ``kind`` ("data": an
        input, an expected output; "text": a sidecar, not vetted). A code-carrying artifact must
        also match its sidecar. Raises MissingGolden or CorruptGolden."""
        from harness.goldens.streams import NotAdmitted
        from harness.goldens.vetting import CODE_CARRYING, MAX_FILE_BYTES, Refused, Untrusted, vet

        code = kind in CODE_CARRYING
        entry = self.files.get(name)
        if entry is not None and file_problem(entry):
            raise CorruptGolden(f"{name}: {file_problem(entry)}")
        data = self._read_inside(name, MAX_FILE_BYTES, entry["size"] if entry else None)
        if entry is None and not (self.manifest is None and (not code or self.trust_unverified)):
            why = "no manifest" if self.manifest is None else "no manifest entry"
            raise CorruptGolden(
                f"{name} carries code and has {why}; refusing to load it "
                "(pin the directory with 'bc-harness pin' or pass --trust-unverified)"
                if code else f"{name} has no manifest entry"
            )
        if entry is not None and entry.get("sha256") != sha256(data):
            raise CorruptGolden(
                f"{name} does not match its manifest entry "
                f"({len(data)} bytes, sha256 {sha256(data)[:12]}…; manifest: "
                f"{entry.get('size')} bytes, {str(entry.get('sha256'))[:12]}…)"
            )
        if kind == "text":
            return data
        try:
            vet(kind, data, name, trusted=self.trust_code, operators=self.operators, claimed=self.version)
            if code and self.manifest is not None:
                self._check_sidecar(name, kind, data)
        except NotAdmitted as exc:
            raise UnloadableGolden(str(exc)) from None
        except Untrusted as exc:
            raise CorruptGolden(f"not loaded, unsafe: {exc} (load it anyway with --trust-goldens, "
                                "if you trust where this golden came from)") from None
        except Refused as exc:
            raise CorruptGolden(f"not loaded: {exc}") from None
        except GoldenError:
            raise
        except Exception as exc:  # a shape of file the vetting did not foresee: refused all the same
            raise CorruptGolden(f"not loaded: vetting it failed ({type(exc).__name__}: {str(exc)[:120]})") from None
        return data

    def _check_sidecar(self, name: str, kind: str, data: bytes) -> None:
        """A code-carrying golden's code must be the text its sidecar shows a reviewer."""
        from harness.goldens.vetting import embedded_code

        sidecar = sidecar_name(name)
        if sidecar not in self.files:
            raise CorruptGolden(f"{name} carries code but has no sidecar {sidecar} showing it "
                                "(run 'bc-harness seal' once for sets written before sidecars)")
        shown = self.read(sidecar, kind="text").decode("utf-8", "replace").splitlines()
        carried = embedded_code(kind, data).splitlines()
        if shown != carried:
            line = next((i for i, (a, b) in enumerate(zip(shown, carried)) if a != b), min(len(shown), len(carried)))
            raise CorruptGolden(f"{name} carries code that differs from its sidecar {sidecar} "
                                f"(from line {line + 1}): its code was changed without its text")

    def _read_inside(self, name: str, limit: int, expected: int | None) -> bytes:
        return _read(self.root, name, limit, expected)


class GoldenStore:
    """The golden root: one GoldenSet per torch release, each with its manifest."""

    LOCK = ".bc-harness.lock"
    STAGE = ".stage-"

    def __init__(self, root: Path, *, trust_code: bool = False, operators: frozenset = frozenset()):
        self.root = Path(root)
        self.trust_code = trust_code  # --trust-goldens: vetting's allowlists waived for this run
        self.operators = frozenset(operators)  # the project's additions to the operator allowlist

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's exclusive lock: writers (processes, xdist workers) take turns."""
        from filelock import FileLock  # flock on POSIX, LockFileEx on Windows

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / self.LOCK):
            yield

    def versions(self) -> tuple[list[str], list[str]]:
        """(golden versions, stray directory names), versions oldest first."""
        if not self.root.is_dir():
            return [], []
        good, stray = [], []
        for child in self.root.iterdir():
            if not child.is_dir() or child.name.startswith("."):
                continue
            (good if canonical_set_name(child.name) else stray).append(child.name)
        return sorted(good, key=version_key), sorted(stray)

    #: marks a directory as a golden store: pytest never collects it (harness.pytest_plugin)
    MARKER = ".bc-harness-store"
    MARKER_TEXT = ("This directory is a bc-harness golden store: data, never code. pytest does not collect it\n"
                   "(the bc-harness plugin ignores it), and replay and verify refuse Python files in it.\n")
    #: what git must not see: the store's lock and the temporaries of writes (never goldens)
    IGNORED = (f"# written by bc-harness: the store's lock and the temporaries of its writes are not goldens\n"
               f"{LOCK}\n{STAGE}*\n.*.tmp\n")

    def mark(self) -> None:
        """Write the store's marker (harness.pytest_plugin ignores a marked directory) and its .gitignore."""
        for name, text in ((self.MARKER, self.MARKER_TEXT), (".gitignore", self.IGNORED)):
            if not (self.root / name).is_file():
                atomic_write(self.root / name, text.encode())

    def intruders(self) -> list[tuple[str, str]]:
        """(path relative to the store, why) of what must not be in a golden store: Python source
        (pytest imports a conftest.py it finds, and a test module it collects), symbolic links
        and anything that is not a regular file or a directory. Nothing is followed."""
        found = []
        if not self.root.is_dir():
            return found
        todo = [self.root]  # a stack of its own (os.walk recurses): a tree of any depth is walked
        while todo:
            top = todo.pop()
            try:
                names = sorted(os.listdir(top))
            except OSError:
                continue
            for name in names:
                path = top / name
                relative = path.relative_to(self.root).as_posix()
                try:
                    mode = path.lstat().st_mode
                except OSError:  # gone while listed
                    continue
                if stat.S_ISDIR(mode):
                    todo.append(path)
                if name.endswith((".py", ".pyc", ".pyw", ".pth")):
                    found.append((relative, "Python source inside a golden store: pytest would import a conftest.py "
                                            "or test module from here; goldens are data, never code to import"))
                elif stat.S_ISLNK(mode):
                    found.append((relative, "a symbolic link inside a golden store: nothing in a store is followed"))
                elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    found.append((relative, "neither a regular file nor a directory (a FIFO, a device or a socket)"))
        return sorted(found)

    def open(self, version: str, *, unsealed_ok: bool = False) -> GoldenSet:
        return GoldenSet.open(self.root / version, version, trust_code=self.trust_code, unsealed_ok=unsealed_ok,
                              operators=self.operators)

    def write(self, version: str, cases: dict, files: dict[str, bytes], info: dict,
              *, overwrite: bool = False) -> Manifest:
        """Write the given cases' files, then the merged manifest. Returns the manifest.

        ``cases`` maps case id to its manifest entry (a CaseEntry, or its JSON); ``files`` maps
        paths relative to the version directory (``<case>/<file>``) to bytes. Cases not named
        keep their entries.
        """
        with self.lock():
            self.mark()
            return self._write(version, cases, files, info, overwrite)

    def _write(self, version, cases, files, info, overwrite) -> Manifest:
        """Build the new version directory beside the old one, then swap them in one step.

        The stage starts as hard links to every current file; new files replace links by
        rename (the old inodes are never written), so a kill at any moment leaves either the
        old directory and manifest or the new ones, whole. A stage left by a killed run is
        swept by the next writer.
        """
        target = self.root / version
        current = GoldenSet.open(target, version, required=False, unsealed_ok=True)
        if current.manifest_error:
            raise GoldenError(current.manifest_error)
        old = current.manifest if current.manifest is not None else Manifest()
        clash = sorted(c for c in cases if c in old.cases or (target / case_dir(c)).exists())
        if clash and not overwrite:
            raise GoldenExists(
                f"goldens exist for {', '.join(clash)} under {target}; pass --force to overwrite"
            )
        self._sweep(version)
        stage = self.root / f"{self.STAGE}{version}-{os.getpid()}"
        try:
            link_tree(target, stage)
            manifest = self._fill(stage, old, cases, files, info)
            fsync_tree(stage)
            if target.exists():
                exchange(stage, target)  # stage now holds the old directory
                shutil.rmtree(stage, ignore_errors=True)
            else:
                os.rename(stage, target)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return manifest

    def _sweep(self, version: str) -> None:
        """Remove stages of earlier, killed writes of this version (the caller holds the lock)."""
        for leftover in self.root.glob(f"{self.STAGE}{version}-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    @staticmethod
    def _fill(stage: Path, old: Manifest, cases: dict, files: dict, info: dict) -> Manifest:
        for case_id in cases:  # a regenerated case keeps only the files it has now
            directory = stage / case_dir(case_id)
            for path in directory.iterdir() if directory.is_dir() else ():
                if path.is_file() and f"{case_dir(case_id)}/{path.name}" not in files:
                    path.unlink()
        for name, data in sorted(files.items()):
            atomic_write(stage / name, data, sync_dir=False)
        manifest = old.merged(cases, files, info)
        atomic_write(stage / MANIFEST, manifest.dump(), sync_dir=False)
        return manifest

    def remove(self, version: str, case_ids: list[str], why: str) -> list[str]:
        """Drop cases from a golden set, recording ``why``: manifest first (without them, its
        golden count lowered), then their files. Only case ids the manifest names, each a valid
        id, so nothing outside the set's own case directories is touched."""
        with self.lock():
            target = self.root / version
            current = GoldenSet.open(target, version, unsealed_ok=True)
            if current.manifest_error:
                raise GoldenError(current.manifest_error)
            gone = [c for c in case_ids if c in current.cases and valid_case_id(c)]
            atomic_write(target / MANIFEST, current.manifest.without(gone, why).dump())
            for case_id in gone:
                directory = target / case_dir(case_id)
                if directory.is_symlink() or not directory.resolve().is_relative_to(target.resolve()):
                    continue
                for path in directory.iterdir() if directory.is_dir() else ():
                    if path.is_file() and not path.is_symlink():
                        path.unlink()
                if directory.is_dir() and not any(directory.iterdir()):
                    directory.rmdir()
            return gone

    def remove_artifacts(self, version: str, kinds: dict[str, list[str]], why: str) -> list[str]:
        """Drop some artifact kinds of cases (case -> kinds), recording ``why``: manifest first, then
        the files (each kind's file and sidecar). Only kinds the manifest records as made."""
        from harness.goldens.layout import file_name, sidecar_name

        with self.lock():
            target = self.root / version
            current = GoldenSet.open(target, version, unsealed_ok=True)
            if current.manifest_error:
                raise GoldenError(current.manifest_error)
            chosen = {c: [k for k in ks if k in current.cases[c].artifacts] for c, ks in kinds.items()
                      if c in current.cases and valid_case_id(c)}
            chosen = {c: ks for c, ks in chosen.items() if ks}
            atomic_write(target / MANIFEST, current.manifest.without_artifacts(chosen, why).dump())
            for case_id, names in chosen.items():
                for kind in names:
                    for name in (f"{case_dir(case_id)}/{file_name(kind)}",
                                 sidecar_name(f"{case_dir(case_id)}/{file_name(kind)}")):
                        path = target / name
                        if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(target.resolve()):
                            path.unlink()
            return [f"{c} [{k}]" for c, ks in chosen.items() for k in ks]

    def remove_backends(self, version: str, backends: dict[str, list[str]], why: str) -> list[str]:
        """Drop some backends' expected outputs of cases (case -> backends), recording ``why``:
        manifest first, then the files. Only backends the manifest records as made."""
        from harness.goldens.layout import HarnessLayout

        with self.lock():
            target = self.root / version
            current = GoldenSet.open(target, version, unsealed_ok=True)
            if current.manifest_error:
                raise GoldenError(current.manifest_error)
            from harness.backends import BACKENDS

            chosen = {c: [b for b in bs if b in BACKENDS and current.cases[c].made(b)] for c, bs in backends.items()
                      if c in current.cases and valid_case_id(c)}
            chosen = {c: bs for c, bs in chosen.items() if bs}
            atomic_write(target / MANIFEST, current.manifest.without_backends(chosen, why).dump())
            for case_id, names in chosen.items():
                for backend in names:
                    path = target / HarnessLayout.expected_name(case_id, backend)
                    if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(target.resolve()):
                        path.unlink()
            return [f"{c} [{b}]" for c, bs in chosen.items() for b in bs]
