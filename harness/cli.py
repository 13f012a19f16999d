"""Command line: ``bc-harness`` (replay, pin, cases) and ``regenerate-goldens``.

Exit status: 0 nothing failed, 1 some result failed (or a golden would be overwritten),
2 a usage error. No traceback reaches the user unless --verbose.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .catalog import ROUNDING_ULPS
from .engines import ENGINE_ORDER

USAGE_ERROR = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _readable_dir(path: Path, what: str = "") -> Path:
    """``path`` if it is a directory this process can list; otherwise a UsageError saying why."""
    label = f"{what} {path}" if what else str(path)
    if not path.exists():
        raise UsageError(f"{label} does not exist")
    if not path.is_dir():
        raise UsageError(f"{label} is not a directory")
    try:
        with os.scandir(path):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {label}: {exc.strerror or exc}") from exc
    return path


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--goldens", metavar="DIR",
                        help="golden directory (default: [tool.bc-harness] goldens, or serialized/)")
    parser.add_argument("--fixtures", metavar="DIR",
                        help="case catalog directory (default: [tool.bc-harness] fixtures, or fixtures/)")
    parser.add_argument("-k", dest="patterns", action="append", metavar="PATTERN",
                        help="only cases whose id contains PATTERN or matches it as a glob; repeatable")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of errors")


def _rounding_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exact", action="store_true",
                        help="float outputs must be bit-exact: a float rounding difference fails as a drift")
    parser.add_argument("--rounding-ulps", type=int, metavar="N",
                        help=f"float rounding bound for every case, in ulps of each output's largest magnitude "
                             f"(default: each case's own, {ROUNDING_ULPS} unless it says otherwise)")


def _rounding_ulps(args) -> int | None:
    """The run's rounding bound: None (each case's), 0 for --exact, or --rounding-ulps N."""
    if args.exact and args.rounding_ulps is not None:
        raise UsageError("--exact and --rounding-ulps conflict: --exact is a bound of 0")
    if args.rounding_ulps is not None and args.rounding_ulps < 0:
        raise UsageError(f"--rounding-ulps {args.rounding_ulps}: the bound must be 0 or more")
    return 0 if args.exact else args.rounding_ulps


def _catalog(args):
    from .catalog import CatalogError, load_catalog, select
    from .config import ConfigError, resolve

    try:
        paths = resolve(args.goldens, args.fixtures)
        cases = load_catalog(paths.fixtures)
    except (ConfigError, CatalogError) as exc:
        raise UsageError(str(exc)) from exc
    chosen = select(cases, args.patterns)
    if args.patterns and not chosen:
        raise UsageError(f"no case matches -k {' -k '.join(args.patterns)}")
    return paths, chosen


def _backends(args) -> list[str] | None:
    if not args.backends:
        return None
    unknown = [b for b in args.backends if b not in ENGINE_ORDER]
    if unknown:
        raise UsageError(f"unknown backend {unknown[0]!r}; choose from {', '.join(ENGINE_ORDER)}")
    return list(dict.fromkeys(args.backends))


# --- bc-harness ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bc-harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    replay = sub.add_parser("replay", help="replay goldens with the installed torch and judge them")
    _common(replay)
    replay.add_argument("directory", nargs="?", metavar="DIR",
                        help="with --layout pytorch: the flat directory of PyTorch's files")
    replay.add_argument("--layout", choices=("harness", "pytorch"), default="harness")
    replay.add_argument("--backend", dest="backends", action="append", metavar="NAME",
                        help=f"only this backend ({', '.join(ENGINE_ORDER)}); repeatable")
    replay.add_argument("--json", metavar="FILE", help="write one JSON record per result")
    replay.add_argument("--trust-unverified", action="store_true",
                        help="load code-carrying files that no manifest vouches for (unsafe)")
    replay.add_argument("-q", "--quiet", action="store_true", help="no table, only problems and the summary")
    replay.add_argument("--no-forward", action="store_true",
                        help="do not replay goldens of newer torch versions (forward compatibility)")
    replay.add_argument("-j", "--jobs", type=int, metavar="N", default=None,
                        help="replay in N worker processes (default: one per core, when the recorded "
                             "costs say the work outweighs starting them)")
    replay.add_argument("--shard", metavar="K/N",
                        help="replay only shard K of N: a deterministic split balanced by replay-costs.json")
    replay.add_argument("--record-costs", action="store_true",
                        help="write each (version, case)'s seconds into replay-costs.json beside the goldens")
    _rounding_flags(replay)

    pin = sub.add_parser("pin", help="record sha256 checksums of a foreign golden directory")
    pin.add_argument("directory", metavar="DIR")
    pin.add_argument("--torch", metavar="VERSION", help="the torch version that made the files, if known")

    report = sub.add_parser("report", help="merge replay JSON files into one matrix (HTML and/or Markdown)")
    report.add_argument("results", nargs="+", metavar="JSON", help="files written by replay --json")
    report.add_argument("--html", metavar="FILE", help="write a self-contained HTML page")
    report.add_argument("--md", metavar="FILE", help="write Markdown")

    diff = sub.add_parser("diff-backends",
                          help="each backend's distance to the reference kernels, case by case")
    _common(diff)
    diff.add_argument("--backend", dest="backends", action="append", metavar="NAME",
                      help=f"only this backend ({', '.join(ENGINE_ORDER)}); repeatable")

    verify = sub.add_parser("verify", help="check every golden file against its manifest; list unknown files")
    verify.add_argument("directory", nargs="?", metavar="DIR", help="the golden store (default: the configured one)")
    verify.add_argument("--goldens", metavar="DIR", help=argparse.SUPPRESS)

    cases = sub.add_parser("cases", help="list the case catalog")
    _common(cases)
    cases.add_argument("--markdown", action="store_true",
                       help="print the catalog as the Markdown block the README carries")
    return parser


def _run(prog: str, command, args) -> int:
    """Run a command; usage errors become one line and exit 2, never a traceback."""
    try:
        return command(args)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"replay": _replay, "pin": _pin, "cases": _cases, "report": _report,
               "diff-backends": _diff_backends, "verify": _verify}[args.command]
    return _run("bc-harness", command, args)


def _check_replay_flags(args) -> tuple[int, int] | None:
    """Usage errors of ``replay``'s flags, before anything is loaded; returns the shard."""
    if args.layout == "pytorch" and not args.directory:
        raise UsageError("--layout pytorch needs the directory of PyTorch's files")
    if args.layout == "pytorch" and args.goldens:
        raise UsageError("--goldens and --layout pytorch conflict: the PyTorch directory is DIR")
    if args.layout == "pytorch" and args.no_forward:
        raise UsageError("--no-forward and --layout pytorch conflict: a PyTorch directory is one golden set")
    for flag, given in (("--shard", args.shard), ("--record-costs", args.record_costs)):
        if args.layout == "pytorch" and given:
            raise UsageError(f"{flag} and --layout pytorch conflict: it splits and times a golden store")
    for flag, given in (("--exact", args.exact), ("--rounding-ulps", args.rounding_ulps is not None)):
        if args.layout == "pytorch" and given:
            raise UsageError(f"{flag} and --layout pytorch conflict: PyTorch's files are judged as its tests judge")
    if args.shard and args.record_costs:
        raise UsageError("--shard and --record-costs conflict: record costs from a whole replay")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"-j {args.jobs}: the number of worker processes must be at least 1")
    if args.layout == "harness" and args.directory:
        if args.goldens:
            raise UsageError("give the golden directory once: either DIR or --goldens")
        args.goldens = args.directory
    if not args.shard:
        return None
    from .shard import parse_shard

    try:
        return parse_shard(args.shard)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _replay(args) -> int:
    backends = _backends(args)
    shard = _check_replay_flags(args)
    rounding_ulps = _rounding_ulps(args)
    paths, cases = _catalog(args)

    from .known import KnownDriftError
    from .known import load as load_known
    from .replay import Options, replay_pytorch_dir, replay_store
    from .store import GoldenStore

    options = Options(backends=backends, verbose=args.verbose, trust_unverified=args.trust_unverified,
                      forward=not args.no_forward, patterns=args.patterns, rounding_ulps=rounding_ulps)
    if args.layout == "harness":
        try:
            options.known = load_known(paths.goldens)
        except KnownDriftError as exc:
            raise UsageError(str(exc)) from exc
    started = time.perf_counter()
    if args.layout == "pytorch":
        found = list(replay_pytorch_dir(_readable_dir(Path(args.directory)), cases, options))
    else:
        store = GoldenStore(_readable_dir(paths.goldens, "golden directory"))
        if store.versions() == ([], []):
            raise UsageError(f"{paths.goldens} holds no golden version directory")
        timings = {}
        try:
            found = list(replay_store(store, cases, options, jobs=args.jobs, shard=shard,
                                      fixtures=paths.fixtures, timings=timings))
        except ValueError as exc:  # an unreadable replay-costs.json
            raise UsageError(str(exc)) from exc
        if args.record_costs:
            from .shard import write_costs

            print(f"recorded {len(timings)} costs in {write_costs(paths.goldens, timings)}", file=sys.stderr)
    return _print_replay(found, args, time.perf_counter() - started)


def _print_replay(found, args, elapsed: float) -> int:
    """The table, the reasons, the rounding per machine pair, forward results, the summary line."""
    from . import results as R

    if args.json:
        try:
            R.write_json(found, Path(args.json))
        except OSError as exc:
            raise UsageError(f"cannot write {args.json}: {exc.strerror}") from exc
    backward = [r for r in found if not r.forward]
    forward = [r for r in found if r.forward]
    if not args.quiet and backward:
        print(R.table(backward))
        print()
    for block in (R.details(backward), R.rounding_summary(backward)):
        if block:
            print(block)
            print()
    if forward:
        print("Forward compatibility (informational, never fails the run): goldens newer than this torch")
        if not args.quiet:
            print(R.table(forward))
        print(f"forward: {R.summary(forward).split(': ', 1)[1]}")
        print()
    print(f"{R.summary(backward)} in {elapsed:.1f} s")
    return 1 if any(r.failed for r in found) else 0


def _verify(args) -> int:
    from .config import ConfigError, resolve
    from .store import verify

    if args.directory:
        root = Path(args.directory)
    else:
        try:
            root = resolve(goldens=args.goldens).goldens
        except ConfigError as exc:
            raise UsageError(str(exc)) from exc
    verified, findings = verify(_readable_dir(root))
    for f in findings:
        print(f"{f.where}: {f.problem}")
    status = "FAILED" if findings else "OK"
    print(f"{status}: {verified} files match their manifests, {len(findings)} problems, in {root}")
    return 1 if findings else 0


def _pin(args) -> int:
    directory = _readable_dir(Path(args.directory))
    from .generate import command_line
    from .store import pin

    info = {"command": command_line()}
    if args.torch:
        info["torch"] = args.torch
    manifest = pin(directory, info)
    print(f"pinned {len(manifest['files'])} files in {directory / 'manifest.json'}")
    return 0


def _report(args) -> int:
    from .report import Report

    paths = [Path(p) for p in args.results]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"no such results file: {missing[0]}")
    if not (args.html or args.md):
        raise UsageError("say where to write the report: --html FILE and/or --md FILE")
    if args.html and args.md and Path(args.html).resolve() == Path(args.md).resolve():
        raise UsageError("--html and --md conflict: they name the same file")
    try:
        report = Report.load(paths)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"not a replay results file: {exc}") from exc
    if args.html:
        Path(args.html).write_text(report.html(), encoding="utf-8")
    if args.md:
        Path(args.md).write_text(report.markdown(), encoding="utf-8")
    drifts = report.drifts()
    print(f"{len(report.records)} results from runtimes {', '.join(report.runtimes)}; "
          f"{len(drifts)} drifting (case, golden, backend) series, "
          f"{sum(1 for d in drifts if not d['known'])} not known; "
          + " and ".join(f"{k} written to {v}" for k, v in (("HTML", args.html), ("Markdown", args.md)) if v))
    return 0


def catalog_markdown(cases) -> str:
    """The README's catalog section: counts per fixture file and artifact kind, then every case."""
    from collections import Counter

    from .catalog import ARTIFACT_KINDS, FLOWS

    files = Counter(c.source for c in cases)
    kinds = Counter(k for c in cases for k in c.artifacts)
    flows = Counter(c.flow for c in cases)
    used = [k for k in ARTIFACT_KINDS if kinds[k]]
    lines = [f"{len(cases)} cases. Per fixture file: " + ", ".join(f"`{f}` {n}" for f, n in files.items())
             + ". Per artifact kind: " + ", ".join(f"{k} {kinds[k]}" for k in used) + ".", "",
             "Cases per flow and artifact kind:", "",
             "| flow | cases | " + " | ".join(used) + " |", "|---|---:|" + "---:|" * len(used)]
    for flow in (f for f in FLOWS if flows[f]):
        per_kind = Counter(k for c in cases if c.flow == flow for k in c.artifacts)
        lines.append(f"| {flow} | {flows[flow]} | " + " | ".join(str(per_kind[k] or "") for k in used) + " |")
    lines += ["", "| case | fixture | flow | artifacts | PyTorch test | what |", "|---|---|---|---|---|---|"]
    for c in cases:
        lines.append(f"| `{c.id}` | {c.source} | {c.flow} | {', '.join(c.artifacts)} | "
                     f"{c.pytorch.method if c.pytorch else ''} | {c.description} |")
    return "\n".join(lines) + "\n"


def _diff_backends(args) -> int:
    from .diffbackends import matrix

    _paths, cases = _catalog(args)
    print(matrix(cases, _backends(args)))
    return 0


def _cases(args) -> int:
    _paths, cases = _catalog(args)
    if args.markdown:
        print(catalog_markdown(cases), end="")
        return 0
    from tabulate import tabulate

    rows = [[c.id, c.flow, ",".join(c.artifacts), c.pytorch.method if c.pytorch else "", c.description]
            for c in cases]
    print(tabulate(rows, headers=["case", "flow", "artifacts", "PyTorch test", "what"]))
    return 0


# --- regenerate-goldens ----------------------------------------------------------------

def regenerate_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="regenerate-goldens",
        description="Generate goldens for the installed torch into serialized/<torch release>/.",
    )
    _common(parser)
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing goldens, after printing what changed numerically")
    parser.add_argument("--torch", metavar="VERSION",
                        help="generate with this torch release, in a cached isolated environment "
                             "(torch from the package registry; this checkout's harness)")
    return parser


def regenerate_main(argv: list[str] | None = None) -> int:
    args = regenerate_parser().parse_args(argv)
    return _run("regenerate-goldens", _regenerate, args)


def _regenerate(args) -> int:
    if args.torch:
        return _regenerate_elsewhere(args)
    paths, cases = _catalog(args)

    from .compat import torch_release
    from .generate import changes_report, command_line, generate_case, generation_info, keep_unchanged
    from .store import GoldenError, GoldenExists, GoldenStore

    if paths.goldens.exists():
        _readable_dir(paths.goldens, "golden directory")
    store = GoldenStore(paths.goldens)
    version = torch_release()
    current = store.open(version) if (paths.goldens / version).is_dir() else None
    if current is not None and current.manifest_error and any((paths.goldens / version).iterdir()):
        print(f"regenerate-goldens: {current.manifest_error}; the golden set cannot be updated safely. "
              f"Repair it from version control, or remove {paths.goldens / version} to start afresh.",
              file=sys.stderr)
        return 1
    existing = current.cases if current is not None else {}
    clash = [c.id for c in cases if c.id in existing or (paths.goldens / version / c.id).exists()]
    if clash and not args.force:
        print(f"regenerate-goldens: refusing to overwrite goldens of {len(clash)} case(s) under "
              f"{paths.goldens / version}: {', '.join(clash)}\n"
              "Pass --force to overwrite them; the numeric changes are printed first.", file=sys.stderr)
        return 1

    print(f"generating {len(cases)} case(s) with torch {version} into {paths.goldens / version}")
    generated = []
    for case in cases:
        started = time.perf_counter()
        g = generate_case(case)
        generated.append(g)
        backends = g.entry.get("backends", {})
        made = [b for b, s in backends.items() if s == "ok"]
        note = g.entry.get("skipped") or ", ".join(
            [f"{len(g.entry['artifacts'])} artifacts", f"backends {'/'.join(made) or 'none'}"]
            + [f"{k} skipped" for k in g.entry.get("skipped_artifacts", {})]
        )
        print(f"  {case.id:<48} {note} ({time.perf_counter() - started:.2f} s)")

    if clash:
        old = store.open(version)
        print()
        print(changes_report(old, generated))
        kept = keep_unchanged(old, generated)
        if kept:
            print(f"{kept} data files have the same content as before; their old bytes are kept")
        print()
    try:
        store.write(version, {g.case.id: g.entry for g in generated},
                    {name: data for g in generated for name, data in g.files.items()},
                    generation_info(command_line()), overwrite=args.force)
    except GoldenExists as exc:  # a concurrent writer got there first
        print(f"regenerate-goldens: {exc}", file=sys.stderr)
        return 1
    except (GoldenError, OSError) as exc:
        print(f"regenerate-goldens: cannot write goldens: {exc}", file=sys.stderr)
        return 1
    files = sum(len(g.files) for g in generated)
    print(f"wrote {files} files and {paths.goldens / version / 'manifest.json'}")
    return 0


def _regenerate_elsewhere(args) -> int:
    """regenerate-goldens --torch VERSION: the same command, run in that version's environment."""
    from packaging.version import InvalidVersion, Version

    from .config import ConfigError, resolve
    from .generate import command_line
    from .isolated import ensure_env, run_harness

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
