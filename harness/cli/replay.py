"""``bc-harness replay``: its flags' checks, the replay through harness.replaying.schedule, and what it prints."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.goldens.layout import LAYOUTS
from harness.cli.common import UsageError, backends, catalog, readable_dir, rounding_ulps

def check_flags(args) -> tuple[int, int] | None:
    """Usage errors of ``replay``'s flags, before anything is loaded; returns the shard."""
    layout, named = LAYOUTS[args.layout], f"--layout {args.layout}"
    if layout.single_set and not args.directory:
        raise UsageError(f"{named} needs the directory of PyTorch's files")
    if layout.single_set and args.goldens:
        raise UsageError(f"--goldens and {named} conflict: the PyTorch directory is DIR")
    if layout.single_set and args.no_forward:
        raise UsageError(f"--no-forward and {named} conflict: a PyTorch directory is one golden set")
    for flag, given in (("--shard", args.shard), ("--record-costs", args.record_costs)):
        if layout.single_set and given:
            raise UsageError(f"{flag} and {named} conflict: it splits and times a golden store")
    for flag, given in (("--exact", args.exact), ("--rounding-ulps", args.rounding_ulps is not None)):
        if not layout.policy and given:
            raise UsageError(f"{flag} and {named} conflict: PyTorch's files are judged as its tests judge")
    if layout.single_set and args.versions:
        raise UsageError(f"--golden and {named} conflict: a PyTorch directory is one golden set")
    if args.shard and args.record_costs:
        raise UsageError("--shard and --record-costs conflict: record costs from a whole replay")
    if args.result_timeout < 0:
        raise UsageError(f"--result-timeout {args.result_timeout:g}: the limit must be 0 (none) or more seconds")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"-j {args.jobs}: the number of worker processes must be at least 1")
    if not layout.single_set and args.directory:
        if args.goldens:
            raise UsageError("give the golden directory once: either DIR or --goldens")
        args.goldens = args.directory
    if not args.shard:
        return None
    from harness.replaying.shard import parse_shard

    try:
        return parse_shard(args.shard)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def replay(args) -> int:
    chosen_backends = backends(args)
    shard = check_flags(args)
    bound = rounding_ulps(args)
    paths, cases = catalog(args, optional=not LAYOUTS[args.layout].single_set)

    from harness.goldens.known import KnownDriftError
    from harness.goldens.known import load as load_known
    from harness.replaying.schedule import Options, replay_pytorch_dir, replay_store
    from harness.goldens.store import GoldenStore

    from harness.config import ConfigError
    from harness.config import operators as project_operators

    layout = LAYOUTS[args.layout]
    try:
        extra = tuple(sorted(project_operators(Path.cwd())))
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    options = Options(operators=extra, backends=chosen_backends, verbose=args.verbose, trust_unverified=args.trust_unverified,
                      trust_goldens=args.trust_goldens, forward=not args.no_forward, patterns=args.patterns, rounding_ulps=bound,
                      versions=args.versions, result_timeout=args.result_timeout or None)
    if layout.known_drifts:
        try:
            options.known = load_known(paths.goldens)
        except KnownDriftError as exc:
            raise UsageError(str(exc)) from exc
    started = time.perf_counter()
    if layout.single_set:
        found = list(replay_pytorch_dir(readable_dir(Path(args.directory)), cases, options, paths.fixtures))
    else:
        store = GoldenStore(readable_dir(paths.goldens, "golden directory"))
        if store.versions() == ([], []):
            raise UsageError(f"{paths.goldens} holds no golden version directory")
        absent = [v for v in args.versions or () if v not in store.versions()[0]]
        if absent:
            raise UsageError(f"--golden {absent[0]}: {paths.goldens} has no golden set of torch {absent[0]} "
                             f"(it has {', '.join(store.versions()[0])})")
        timings = {}
        try:
            found = list(replay_store(store, cases, options, jobs=args.jobs, shard=shard,
                                      fixtures=paths.fixtures, timings=timings, isolated=True))
        except ValueError as exc:  # an unreadable replay-costs.json
            raise UsageError(str(exc)) from exc
        if args.record_costs:
            from harness.replaying.shard import write_costs

            print(f"recorded {len(timings)} costs in {write_costs(paths.goldens, timings)}", file=sys.stderr)
    return _print(found, args, time.perf_counter() - started)


def _print(found, args, elapsed: float) -> int:
    """The overview and what needs attention (harness.reporting.console); -v every row and reason."""
    from harness.replaying import results as R
    from harness.reporting.console import render

    if args.json:
        try:
            R.write_json(found, Path(args.json))
        except OSError as exc:
            raise UsageError(f"cannot write {args.json}: {exc.strerror}") from exc
    print(render(found, every_row=args.every_row or args.verbose, quiet=args.quiet, elapsed=elapsed))
    return 1 if any(r.failed for r in found) else 0
