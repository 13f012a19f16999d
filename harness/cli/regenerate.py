"""``regenerate-goldens``: goldens of the installed torch (or, with --torch, of another, in its own
environment), written through harness.writing."""

from __future__ import annotations

import subprocess
import sys
import time

from .common import UsageError, catalog, readable_dir

def regenerate(args) -> int:
    if args.torch:
        return _regenerate_elsewhere(args)
    paths, cases = catalog(args)

    from ..compat import torch_release
    from ..generate import command_line, generate_isolated
    from ..sandbox import Sandbox
    from ..store import GoldenError, GoldenExists, GoldenStore
    from ..writing import write_goldens

    if paths.goldens.exists():
        readable_dir(paths.goldens, "golden directory")
    store, version = GoldenStore(paths.goldens), torch_release()
    refused = _refusal(store, version, cases, args.force)
    if refused:
        print(f"regenerate-goldens: {refused}", file=sys.stderr)
        return 1
    print(f"generating {len(cases)} case(s) with torch {version} into {paths.goldens / version}")
    generated, box = [], Sandbox()  # a stage that crashes torch is recorded, and the rest goes on
    try:
        for case in cases:
            started = time.perf_counter()
            generated.append(generate_isolated(box, paths.fixtures, case))
            print(f"  {case.id:<48} {_made(generated[-1].entry)} ({time.perf_counter() - started:.2f} s)", flush=True)
    finally:
        box.close()
    try:
        written = write_goldens(store, version, generated, command_line(), overwrite=args.force,
                                say=lambda text: print(f"\n{text}\n"))
    except GoldenExists as exc:  # a concurrent writer got there first
        print(f"regenerate-goldens: {exc}", file=sys.stderr)
        return 1
    except (GoldenError, OSError) as exc:
        print(f"regenerate-goldens: cannot write goldens: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {written.files} files and {written.directory / 'manifest.json'}")
    return 0


def _refusal(store, version: str, cases, force: bool) -> str | None:
    """Why regeneration must not start: an unusable golden set, or goldens it would overwrite."""
    from ..layout import case_dir

    directory = store.root / version
    current = store.open(version, unsealed_ok=True) if directory.is_dir() else None
    if current is not None and current.manifest_error and any(directory.iterdir()):
        return (f"{current.manifest_error}; the golden set cannot be updated safely. "
                f"Repair it from version control, or remove {directory} to start afresh.")
    existing = current.cases if current is not None else {}
    clash = [c.id for c in cases if c.id in existing or (directory / case_dir(c.id)).exists()]
    if clash and not force:
        return (f"refusing to overwrite goldens of {len(clash)} case(s) under {directory}: {', '.join(clash)}\n"
                "Pass --force to overwrite them; the numeric changes are printed first.")
    return None


def _made(entry) -> str:
    """One line on what generation made of a case."""
    made = [b for b in entry.backends if entry.made(b)]
    crashed = [b for b, status in entry.backends.items() if " crashed " in status]
    return entry.skipped or ", ".join([f"{len(entry.artifacts)} artifacts", f"backends {'/'.join(made) or 'none'}"]
                                      + [f"{k} skipped" for k in entry.skipped_artifacts]
                                      + [f"{b} crashed" for b in crashed])


def _regenerate_elsewhere(args) -> int:
    """regenerate-goldens --torch VERSION: the same command, run in that version's environment."""
    from packaging.version import InvalidVersion, Version

    from ..config import ConfigError, resolve
    from ..generate import command_line
    from ..isolated import ensure_env, run_harness

    try:
        version = Version(args.torch).public
    except InvalidVersion:
        raise UsageError(f"--torch {args.torch!r} is not a version") from None
    try:
        paths = resolve(args.goldens, args.fixtures)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    forwarded = ["--goldens", str(paths.goldens.resolve()), "--fixtures", str(paths.fixtures.resolve())]
    forwarded += [a for p in args.patterns or () for a in ("-k", p)]
    forwarded += ["--force"] if args.force else []
    forwarded += ["--verbose"] if args.verbose else []
    say = lambda line: print(f"[torch {version}] {line}", flush=True)
    try:
        python = ensure_env(version, say)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"regenerate-goldens: cannot prepare torch {version}: {exc}", file=sys.stderr)
        return 1
    return run_harness(python, "regenerate_main", forwarded, command_line())
