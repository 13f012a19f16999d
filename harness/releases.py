"""The torch releases the harness follows: one list, the matrix rows derived from it, and how
each row's torch is installed. No torch is imported here (this runs before torch is installed).

Admitting the next release: raise ``SUPPORTED`` (and pyproject's ``torch`` range, which a test
holds equal to it), add each stack's pair for it (its ``releases`` module, harness.stacks),
replay every golden set on it (``BC_TORCH=X tox -e replay``), and commit its goldens
(``regenerate-goldens --torch X``). The ``latest`` row of the nightly matrix already follows
the registry's newest release without any of this; ``nightly`` follows PyTorch's nightly build.

    python -m harness.releases matrix [--shards N]   # the nightly workflow's rows, as JSON
    python -m harness.releases resolve ROW            # a row's torch version (latest: the registry's)
    python -m harness.releases install ROW [--record DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from harness import stacks
from harness.versions import requirement_name

#: runtime torch releases the harness supports; pyproject's requirement is the same range
SUPPORTED = SpecifierSet(">=1.13,<2.16")
#: the oldest release with a golden set and a nightly row
OLDEST = "1.13.1"
#: the release the README installs (a local CPU build on the project's machines)
LOCAL = "2.13.0"
#: the nightly matrix: row name -> torch (a release, or "latest" / "nightly", resolved at run time)
#: A row may pin a stack's library to a release other than its torch's pair, named as a golden set
#: is (harness.versions: torch release + label); each stack adds such rows (harness.stacks.matrix_rows),
#: the release axis of its own library replayed on one torch.
MATRIX = {"oldest": OLDEST, "torch213": LOCAL, **stacks.matrix_rows(), "latest": "latest", "nightly": "nightly"}
#: torch minor -> the torchvision release built against it (torchvision's compatibility table): a
#: generation extra of the torchvision cases, installed in isolated environments only (the
#: registry's torchvision does not import beside the README's CPU build of torch, so 2.13, the
#: local release, has none here: its set takes no torchvision cases). 2.15 has none on the registry.
TORCHVISION = {"1.13": "0.14.1", "2.0": "0.15.2", "2.4": "0.19.1", "2.8": "0.23.0", "2.10": "0.25.0",
               "2.14": "0.29.1"}

PYPI_JSON = "https://pypi.org/pypi/torch/json"
#: PyTorch's own wheel indexes: CPU-only builds (a few hundred MB, not several GB of CUDA)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NIGHTLY_CPU_INDEX = "https://download.pytorch.org/whl/nightly/cpu"
PYPI_SIMPLE = "https://pypi.org/simple"
#: where the torch of a row comes from: "registry" (pip's configured index; CUDA builds from
#: PyPI) or "cpu" (PyTorch's CPU index, as on hosted runners)
INDEX_VARIABLE = "BC_TORCH_INDEX"
#: a comma-separated list of releases, in place of asking the registry (offline use, tests)
RELEASES_VARIABLE = "BC_HARNESS_RELEASES"
#: what the harness itself needs beside torch (pyproject's other dependencies), for every install
HARNESS_DEPS = ("tabulate>=0.9", "packaging>=23", "filelock>=3.12")
#: the nightly row's exit status when its build cannot be installed (not a BC result)
NOT_INSTALLED = 3


class ReleaseError(Exception):
    """The registry cannot be asked, or a row or version is not one the harness knows."""


def torchvision_for(version: str) -> str | None:
    """The torchvision release that pairs with torch ``version``, for generating goldens."""
    v = Version(version)
    return TORCHVISION.get(f"{v.major}.{v.minor}")


def _fetch_json(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"cannot ask the registry ({url}): {exc}") from exc


def registry_releases(fetch: Callable[[str], dict] = _fetch_json, package: str = "torch") -> list[str]:
    """Every final release of ``package`` the registry has files for, oldest first.

    ``BC_HARNESS_RELEASES`` (comma-separated) answers instead for torch, and
    ``BC_HARNESS_RELEASES_<PACKAGE>`` (``BC_HARNESS_RELEASES_TORCHAO``) for another package,
    without the network.
    """
    given = os.environ.get(RELEASES_VARIABLE if package == "torch" else f"{RELEASES_VARIABLE}_{package.upper()}")
    if given:
        names = [v.strip() for v in given.split(",") if v.strip()]
    else:
        url = PYPI_JSON if package == "torch" else PYPI_JSON.replace("/torch/", f"/{package}/")
        names = [v for v, files in fetch(url).get("releases", {}).items() if files]
    found = []
    for name in names:
        try:
            v = Version(name)
        except InvalidVersion:
            continue
        if not (v.is_prerelease or v.is_devrelease or v.local):
            found.append(v)
    return [str(v) for v in sorted(set(found))]


def newest_release(fetch: Callable[[str], dict] = _fetch_json) -> str:
    found = registry_releases(fetch)
    if not found:
        raise ReleaseError("the registry lists no torch release")
    return found[-1]


def resolve(row: str, fetch: Callable[[str], dict] = _fetch_json) -> str:
    """A matrix row (or a version) as the torch it installs: a release, or "nightly"."""
    spec = MATRIX.get(row, row)
    if spec == "latest":
        return newest_release(fetch)
    if spec == "nightly":
        return spec
    try:
        return str(Version(spec))
    except InvalidVersion:
        raise ReleaseError(f"unknown row {row!r}: rows are {', '.join(MATRIX)}, or a release such as 2.15.0") from None


def pip_args(torch: str, index: str | None = None, extras: bool = False) -> list[str]:
    """``pip install`` arguments for torch ``torch`` (a release or "nightly") and what each registered
    stack installs beside it (harness.stacks.packages: its libraries, pinned to their pair).

    ``index`` "cpu" takes CPU builds from PyTorch's index (PyPI still serves everything else;
    an ``==`` pin then prefers the ``+cpu`` build); "registry" (the default) takes pip's index.
    The nightly build only exists on PyTorch's nightly index. ``extras``: the generation extras
    too (torchvision), for an isolated environment that makes goldens.
    """
    index = index or os.environ.get(INDEX_VARIABLE) or "registry"
    if index not in ("cpu", "registry"):
        raise ReleaseError(f"{INDEX_VARIABLE}={index!r}: choose cpu or registry")
    if torch == "nightly":  # only that index (it mirrors torch's dependencies), as PyTorch's own
        # instructions say; --upgrade: an installed release must not satisfy "torch"
        return ["--pre", "--upgrade", "torch", *stacks.packages(torch), "--index-url", NIGHTLY_CPU_INDEX]
    pin = pinned(torch)
    torch = str(Version(torch).public)
    packages = [f"torch=={torch}", *[p for p in stacks.packages(torch) if not pin or requirement_name(p) != pin[0]]]
    if pin:
        packages.append(f"{pin[0]}=={pin[1]}")
    if extras and torchvision_for(torch):
        packages.append(f"torchvision=={torchvision_for(torch)}")
    source = ["--index-url", CPU_INDEX, "--extra-index-url", PYPI_SIMPLE] if index == "cpu" else []
    return packages + source


def installs(args: list[str]) -> list[list[str]]:
    """``pip install`` argument lists that install ``args`` (pip_args' output) in turn: everything
    but the stacks' install-alone packages, then those with ``--no-deps`` (harness.stacks.install_alone)
    and the same index options."""
    alone_names = stacks.install_alone()
    options = [a for i, a in enumerate(args) if a.startswith("-") or (i and args[i - 1].endswith("-url"))]
    alone = [a for a in args if a not in options and requirement_name(a) in alone_names]
    together = [a for a in args if a not in alone]
    return [together] + ([["--no-deps", *alone, *[o for o in options if o != "--upgrade"]]] if alone else [])


@dataclass(frozen=True)
class Row:
    name: str
    torch: str  # as written in MATRIX: a release, "latest" or "nightly"
    shard: int
    shards: int

    def as_dict(self) -> dict:
        return {"row": self.name, "torch": self.torch, "shard": self.shard, "shards": self.shards,
                "optional": self.torch == "nightly"}


def matrix(shards: int = 2) -> dict:
    """The nightly workflow's matrix: every row of MATRIX in ``shards`` shards (GitHub's include form)."""
    return {"include": [Row(name, torch, k, shards).as_dict() for name, torch in MATRIX.items()
                        for k in range(1, shards + 1)]}


def install(row: str, record: Path | None = None, run=subprocess.run, fetch=_fetch_json) -> int:
    """pip-install a row's torch into this interpreter; a failure is written to
    ``record/install-<row>.json`` (the report lists it as not installed, not as a BC result)."""
    try:
        torch = resolve(row, fetch)
        args = pip_args(torch)
    except ReleaseError as exc:
        return _not_installed(row, row, str(exc), record)
    print(f"installing torch {torch} for row {row}: pip install {' '.join(args)}", flush=True)
    for step in installs(args):
        done = run([sys.executable, "-m", "pip", "install", "--quiet", *step], capture_output=True, text=True)
        if done.returncode != 0:
            break
    if done.returncode == 0:  # the harness's own few dependencies, from the default index
        done = run([sys.executable, "-m", "pip", "install", "--quiet", *HARNESS_DEPS], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-5:])
        return _not_installed(row, torch, f"pip exited {done.returncode}: {tail}", record)
    found = run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    wrong = wrong_torch(torch, found.stdout.strip() if found.returncode == 0 else "")
    if wrong:
        return _not_installed(row, torch, wrong, record)
    print(f"row {row}: torch {found.stdout.strip()} installed", flush=True)
    return 0


def pinned(torch: str) -> tuple[str, str] | None:
    """(library, release) a labelled torch spec pins (``2.13.0+lib.1.0``), or None."""
    label = Version(torch).local if torch != "nightly" else None
    if not label:
        return None
    library, _, release = label.partition(".")
    return library, release


def wrong_torch(asked: str, found: str) -> str | None:
    """Why the installed torch is not the one a row asked for (None when it is): a replay on
    another torch than the row names would be reported under the wrong name."""
    try:
        version = Version(found)
    except InvalidVersion:
        return f"torch does not import after the install (it reports {found!r})"
    if asked == "nightly":
        return None if version.is_devrelease else f"asked for a nightly build, torch {found} is installed"
    asked = Version(asked).public
    return None if version.public == asked else f"asked for torch {asked}, torch {found} is installed"


def _not_installed(row: str, torch: str, error: str, record: Path | None) -> int:
    print(f"row {row}: torch {torch} NOT INSTALLED (not a backward-compatibility result): {error}",
          file=sys.stderr, flush=True)
    if record is not None:
        record.mkdir(parents=True, exist_ok=True)
        (record / f"install-{row}.json").write_text(
            json.dumps({"not_installed": {"row": row, "torch": torch, "error": error}}, indent=1) + "\n",
            encoding="utf-8")
    return NOT_INSTALLED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.releases", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("matrix", help="the nightly workflow's rows as GitHub matrix JSON")
    m.add_argument("--shards", type=int, default=2)
    r = sub.add_parser("resolve", help="the torch a row installs")
    r.add_argument("row")
    i = sub.add_parser("install", help="pip-install a row's torch here")
    i.add_argument("row")
    i.add_argument("--record", type=Path, metavar="DIR", help="write install-<row>.json here on failure")
    args = parser.parse_args(argv)
    try:
        if args.command == "matrix":
            if args.shards < 1:
                parser.error("--shards must be at least 1")
            print(json.dumps(matrix(args.shards)))
        elif args.command == "resolve":
            print(resolve(args.row))
        else:
            return install(args.row, args.record)
    except ReleaseError as exc:
        print(f"harness.releases: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
