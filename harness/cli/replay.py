"""``bc-harness replay``: its arguments as a run request (harness.replaying.request), the replay
through harness.replaying.schedule, and what it prints."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.cli.common import UsageError, catalog, readable_dir
from harness.goldens.layout import LAYOUTS
from harness.replaying.request import CLI, RequestError, RunRequest


def request(args) -> RunRequest:
    """The run request of ``replay``'s arguments, checked before anything is loaded."""
    asked = RunRequest(CLI, layout=args.layout, backends=args.backends, directory=bool(args.directory),
                       exact=args.exact, rounding_ulps=args.rounding_ulps, shard=args.shard,
                       trust_unverified=args.trust_unverified, trust_goldens=args.trust_goldens,
                       forward=not args.no_forward, versions=args.versions, patterns=args.patterns,
                       result_timeout=args.result_timeout, jobs=args.jobs, verbose=args.verbose)
    try:
        checked = asked.check()
    except RequestError as exc:
        raise UsageError(str(exc)) from None
    layout, named = LAYOUTS[args.layout], f"--layout {args.layout}"
    # what only this door has: a store named twice, and --record-costs
    if layout.single_set and args.goldens:
        raise UsageError(f"--goldens and {named} conflict: the PyTorch directory is DIR")
    if args.record_costs and (layout.single_set or args.shard):
        flag = named if layout.single_set else "--shard"
        raise UsageError(f"{flag} and --record-costs conflict: record costs from a whole replay of a golden store")
    if not layout.single_set and args.directory:
        if args.goldens:
            raise UsageError("give the golden directory once: either DIR or --goldens")
        args.goldens = args.directory
    return checked


def replay(args) -> int:
    asked = request(args)
    layout = LAYOUTS[asked.layout]
    paths, cases = catalog(args, optional=not layout.single_set)
    from harness.goldens.store import GoldenStore  # imports torch: after the usage errors
    from harness.replaying.schedule import replay_pytorch_dir, replay_store

    try:
        options = asked.options(Path.cwd(), None if layout.single_set else paths.goldens)
    except RequestError as exc:
        raise UsageError(str(exc)) from None
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
        cache = _cache(args, options, paths.fixtures)
        try:
            found = list(replay_store(store, cases, options, jobs=asked.jobs, shard=asked.shard,
                                      fixtures=paths.fixtures, timings=timings, isolated=True, cache=cache))
        except ValueError as exc:  # an unreadable replay-costs.json
            raise UsageError(str(exc)) from exc
        if cache is not None:
            cache.prune()
            if cache.hits or cache.forward_hits:
                forward = sum(1 for r in found if r.forward)
                extra = f", and {cache.forward_hits} of the {forward} forward-compatibility results" if forward else ""
                print(f"{cache.hits} of the {len(found) - forward} results{extra} came from the result cache, "
                      f"unchanged since they were replayed ({cache.root}; --no-cache replays them)", file=sys.stderr)
        if args.record_costs:
            from harness.replaying.shard import write_costs

            print(f"recorded {len(timings)} costs in {write_costs(paths.goldens, timings)}", file=sys.stderr)
    return _print(found, args, time.perf_counter() - started)


def _cache(args, options, fixtures):
    """The result cache this run reads and writes (harness.replaying.cache), or None: told
    --no-cache, recording costs (every unit's seconds are wanted), or a CI run (always replays)."""
    from harness.config import ci_environment
    from harness.replaying import cache

    if args.no_cache or args.record_costs or ci_environment():
        return None
    return cache.ResultCache(cache.directory(), cache.context(options, fixtures))


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
