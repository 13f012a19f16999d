"""Vouching for golden sets: ``pin`` a foreign directory, ``seal`` a set written before the golden
count and the sidecars were kept, and ``verify`` a whole store.

Each of these states, on the user's word, that the bytes on disk are the ones to trust, so each
vets every file first (harness.goldens.vetting) and refuses code beyond the allowlists unless told to
trust it. They write only inside the directory they were given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.goldens.files import Unreadable, read_inside
from harness.goldens.layout import HarnessLayout, PyTorchLayout, is_sidecar, sidecar_name
from harness.goldens.manifest import NAME as MANIFEST
from harness.goldens.manifest import Manifest, file_entry
from harness.goldens.store import GoldenError, GoldenStore, UnloadableGolden, atomic_write
from harness.goldens.vetting import CODE_CARRYING, MAX_FILE_BYTES, Refused, Untrusted, embedded_code, vet


class Refusal(Exception):
    """A set or directory that is not pinned or sealed, and why."""


@dataclass
class Finding:
    """One thing ``verify`` found in a golden store: wrong (``failing``), or only worth saying."""

    where: str  # version/path
    problem: str
    #: False: the file is sound and vouched for, but this install cannot load it (a
    #: checkpoint naming a library's classes that the installed release does not register): the replay's load-error
    failing: bool = True


def _kind(name: str, kind_of) -> str:
    """What a file is read as: its artifact kind, "data" (a torch file no kind names: an input,
    an expected output), or "text" (a sidecar, or a file no replay loads: checksum only)."""
    if is_sidecar(name):
        return "text"
    return kind_of(name) or ("data" if name.endswith((".pt", ".pt2", ".ptl")) else "text")


def _sidecars(files: dict[str, bytes], kind_of, trusted: bool, operators: frozenset = frozenset()) -> dict[str, bytes]:
    """The sidecars of the code-carrying files among ``files``, each vetted first.
    Raises Refusal listing every file that vetting refused."""
    out, refused = {}, []
    for name, data in sorted(files.items()):
        kind = _kind(name, kind_of)
        try:
            if kind != "text":
                vet(kind, data, name, trusted=trusted, operators=operators)
            if kind in CODE_CARRYING:
                out[sidecar_name(name)] = embedded_code(kind, data).encode()
        except Untrusted as exc:
            refused.append(f"{exc}")
        except Refused as exc:
            if kind in CODE_CARRYING:
                refused.append(f"{exc}")
    if refused:
        hint = "" if trusted else "; pass --trust-goldens to vouch for them anyway"
        raise Refusal(f"{len(refused)} file(s) not vouched for{hint}:\n  " + "\n  ".join(refused))
    return out


def pin(directory: Path, info: dict, *, trusted: bool = False,
        operators: frozenset = frozenset()) -> tuple[Manifest, list[str]]:
    """Record the sha256 of every file of a foreign golden directory (e.g. PyTorch's) in a
    manifest, and a sidecar of each code-carrying file's code. Returns (manifest, the
    code-carrying files pinned). Raises Refusal when a file carries code beyond the allowlists
    (unless ``trusted``) or cannot be read within the bounds.

    Pinning is the user's statement that the bytes on disk now are the ones to trust;
    afterwards a replay loads code-carrying files only if they still match.
    """
    directory = Path(directory)
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.is_symlink() and path.name != MANIFEST and not is_sidecar(path.name) \
                and not path.name.startswith("."):
            try:
                files[path.name] = read_inside(directory, path.name, MAX_FILE_BYTES)
            except Unreadable as exc:
                raise Refusal(str(exc)) from None
    sidecars = _sidecars(files, PyTorchLayout.kind_of, trusted, operators)
    for name, text in sidecars.items():
        atomic_write(directory / name, text)
    entries = {name: file_entry(data) for name, data in {**files, **sidecars}.items()}
    manifest = Manifest(info=dict(info), files=entries, pinned=True)
    atomic_write(directory / MANIFEST, manifest.dump())
    return manifest, [n for n in files if PyTorchLayout.kind_of(n) in CODE_CARRYING]


def seal(root: Path, version: str, *, trusted: bool = False, operators: frozenset = frozenset()) -> tuple[int, int]:
    """Record the golden count of a set written before it was kept, and the sidecars of its
    code-carrying files, through the store's one writer. Returns (files vouched for, sidecars
    written). Raises Refusal when a file does not match the manifest or carries code beyond the
    allowlists (unless ``trusted``), GoldenError when the manifest is unusable."""
    store = GoldenStore(root, trust_code=trusted, operators=operators)
    golden = store.open(version, unsealed_ok=True)
    if golden.manifest_error:
        raise GoldenError(golden.manifest_error)
    files, broken = {}, []
    for name in sorted(golden.files):
        if is_sidecar(name):
            continue
        try:
            files[name] = golden.read(name, kind="text")  # checksum only; vetted below
        except GoldenError as exc:
            broken.append(f"{name}: {exc}")
    if broken:
        raise Refusal(f"{len(broken)} file(s) do not match the manifest, so the set is not sealed:\n  "
                      + "\n  ".join(broken))
    sidecars = {n: t for n, t in _sidecars(files, HarnessLayout.kind_of, trusted, operators).items()
                if golden.files.get(n) != file_entry(t)}
    store.write(version, {}, sidecars, golden.manifest.info)
    return len(files), len(sidecars)


def verify(root: Path, *, trusted: bool = False, operators: frozenset = frozenset()) -> tuple[int, list[Finding]]:
    """Check every manifest entry of every golden version under ``root`` (exists, size, sha256,
    inside the store, vetted, matching its sidecar) and list files no manifest names, stages of
    killed writes and hidden files. Returns (files verified, findings)."""
    store = GoldenStore(root, trust_code=trusted, operators=operators)
    versions, stray = store.versions()
    findings = [Finding(name, "directory not named like a torch version") for name in stray]
    findings += [Finding(where, why) for where, why in store.intruders()]
    findings += [Finding(p.name, "the stage of a write that was killed; the next write removes it")
                 for p in sorted(Path(root).glob(f"{GoldenStore.STAGE}*"))]
    verified = 0
    for version in versions:
        golden = store.open(version)
        if golden.manifest_error:
            findings.append(Finding(f"{version}/{MANIFEST}", golden.manifest_error))
            continue
        for name in sorted(golden.files):
            kind = _kind(name, HarnessLayout.kind_of)
            try:
                golden.read(name, kind=kind)
                verified += 1
            except UnloadableGolden as exc:
                verified += 1
                findings.append(Finding(f"{version}/{name}", f"sound, but not loadable here: {exc}", failing=False))
            except GoldenError as exc:
                findings.append(Finding(f"{version}/{name}", f"{exc.verdict}: {exc}"))
        for path in sorted(_walk(golden.root)):
            relative = path.relative_to(golden.root).as_posix()
            if relative == MANIFEST or not path.is_file() or path.is_symlink():  # links: intruders, above
                continue
            if path.name.startswith("."):
                findings.append(Finding(f"{version}/{relative}", "hidden file: a temporary of a killed write, "
                                        "or something no manifest can vouch for"))
            elif relative not in golden.files:
                findings.append(Finding(f"{version}/{relative}", "unknown file: no manifest entry names it"))
    return verified, findings


def _walk(root: Path):
    """Everything below ``root`` but its directories, no link followed; with a stack of its own (os.walk
    recurses): a tree of any depth is walked."""
    todo = [root]
    while todo:
        try:
            entries = sorted(os.scandir(todo.pop()), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                todo.append(Path(entry.path))
            else:
                yield Path(entry.path)
