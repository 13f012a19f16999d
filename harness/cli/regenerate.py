"""``regenerate-goldens``: goldens of the installed torch (or, with --torch, of another, in its own
environment), written through harness.making.writing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from harness.cli.common import UsageError, catalog, readable_dir
from harness.config import CI_VARIABLES

def regenerate(args) -> int:
    paths, cases = catalog(args, optional=True)
    if paths.fixtures is None:  # no catalog: the store's goldens are pytest tests' own
        return _regenerate_tests(args, paths.goldens)
    if args.torch:
        return _regenerate_elsewhere(args)

    from harness.making.generate import command_line, generate_isolated
    from harness.goldens.store import GoldenError, GoldenExists, GoldenStore
    from harness.making.writing import write_goldens

    if paths.goldens.exists():
        readable_dir(paths.goldens, "golden directory")
    from harness.stacks import own_set

    store, version = GoldenStore(paths.goldens), own_set()
    refused = _refusal(store, version, cases, args.force)
    if refused:
        print(f"regenerate-goldens: {refused}", file=sys.stderr)
        return 1
    print(f"generating {len(cases)} case(s) with torch {version} into {paths.goldens / version}")
    generated = []  # each case in a child of its own: crash-safe, and numbered as if made alone
    for case in cases:
        started = time.perf_counter()
        generated.append(generate_isolated(paths.fixtures, case))
        print(f"  {case.id:<48} {_made(generated[-1].entry)} ({time.perf_counter() - started:.2f} s)", flush=True)
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
    from harness.goldens.layout import case_dir

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

    from harness.config import ConfigError, resolve
    from harness.making.generate import command_line
    from harness.making.isolated import ensure_env, run_harness

    from harness.releases import pinned

    try:
        version, pin = Version(args.torch).public, pinned(args.torch)  # 2.8.0+lib.1.0: that release of lib
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
    say = lambda line: print(f"[torch {version}{f' with {pin[0]} {pin[1]}' if pin else ''}] {line}", flush=True)
    try:
        python = ensure_env(version, say, pin=pin)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"regenerate-goldens: cannot prepare torch {version}: {exc}", file=sys.stderr)
        return 1
    return run_harness(python, "regenerate_main", forwarded, command_line())


def _regenerate_tests(args, goldens) -> int:
    """The goldens of the pytest plugin's tests (each entry's ``owner``): their tests run again with
    pytest, which writes the missing goldens (every one with --force) of the running torch, or,
    with --torch, of that release in its own environment (this checkout's harness, the project on
    the path). Run it from the directory pytest runs from, so that the node ids resolve."""
    from harness.catalog import select
    from harness.goldens.store import GoldenStore

    store = GoldenStore(readable_dir(goldens, "golden directory"))
    owners = {}
    for version in store.versions()[0]:
        golden = store.open(version, unsealed_ok=True)
        for case_id, entry in golden.cases.items():
            if not entry.malformed and entry.owner and select([_Id(case_id)], args.patterns):
                owners.setdefault(entry.owner, case_id)
    if not owners:
        raise UsageError(f"{goldens} holds no goldens of pytest tests, and no case catalog is configured "
                         "(pass --fixtures DIR for the catalog's goldens)")
    python, env = Path(sys.executable), dict(os.environ)
    plugin = []
    if args.torch:
        from harness.making.isolated import ensure_env

        say = lambda line: print(f"[torch {args.torch}] {line}", flush=True)
        try:
            python = ensure_env(args.torch, say, test_runner=True)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"regenerate-goldens: cannot prepare torch {args.torch}: {exc}", file=sys.stderr)
            return 1
        checkout = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), os.getcwd(), env.get("PYTHONPATH")]))
        # not installed there: loaded from this checkout by name, nothing else (an egg-info of the
        # checkout would otherwise register it a second time)
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        plugin = ["-p", "harness.pytest_plugin"]
    command = [str(python), "-m", "pytest", *sorted(owners), "--golden-update" if args.force else
               "--golden-update-new-only", f"--golden-dir={Path(goldens).resolve()}", "-p", "no:cacheprovider",
               *plugin]
    print(f"regenerating the goldens of {len(owners)} test(s) by running them: {' '.join(command[3:])}", flush=True)
    for name in ("CI", *[k for k in env if k in CI_VARIABLES]):
        env.pop(name, None)  # the plugin refuses to write in CI mode; this command is the user's explicit word
    return subprocess.run(command, env=env, stdin=subprocess.DEVNULL).returncode


class _Id:
    def __init__(self, case_id):
        self.id = case_id
