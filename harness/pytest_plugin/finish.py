"""The end of a session: the report file, unused goldens (and pruning them), the golden summary."""

from __future__ import annotations

import json
import shutil
from collections import Counter
import pytest

from harness.pytest_plugin.session import SESSION, GoldenSession

def pytest_sessionfinish(session, exitstatus):
    config = session.config
    state: GoldenSession = config.stash.get(SESSION, None)
    if state is None:
        return
    if state.worker:
        config.workeroutput["bc_harness"] = state.export()
        return
    if state.results and state.report is not None:
        state.report.parent.mkdir(parents=True, exist_ok=True)
        state.report.write_text(json.dumps(state.results, indent=1) + "\n", encoding="utf-8")
    _release_claims(state)
    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        return
    if state.layout_class.writable and (state.results or state.catalog):
        state.unused = _unused(state)
        if state.prune and (state.unused or state.dropped_kinds):
            _prune(state)
        elif state.ci and (state.unused or state.dropped_kinds) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # in CI an unused golden is a failure


def _release_claims(state: GoldenSession) -> None:
    """The run's golden id claims go with it."""
    shutil.rmtree(state.claims_dir(), ignore_errors=True)


def _prune(state: GoldenSession) -> None:
    """--golden-prune: remove what _unused found, through the store, recording why."""
    from harness.goldens.store import GoldenError, GoldenStore

    store = GoldenStore(state.golden_dir)
    for version in sorted({d[0] for d in state.dropped_kinds}):
        kinds: dict[str, list[str]] = {}
        for v, c, k, _why in state.dropped_kinds:
            if v == version:
                kinds.setdefault(c, []).append(k)
        why = "pruned (--golden-prune): " + "; ".join(f"{c} [{k}]: {w}" for v, c, k, w in state.dropped_kinds
                                                     if v == version)
        try:
            gone = store.remove_artifacts(version, kinds, why)
        except (GoldenError, OSError) as exc:
            state.writes.append(f"could not prune {(store.root / version).resolve()}: {exc}")
            continue
        if gone:
            state.writes.append(f"pruned {len(gone)} artifact kind(s) no test asks for from "
                                f"{(store.root / version).resolve()}: " + ", ".join(gone))
    for version in sorted({u[0] for u in state.unused}):
        cases = {c: why for v, c, why, b in state.unused if v == version and b is None}
        backends: dict[str, list[str]] = {}
        for v, c, why, b in state.unused:
            if v == version and b is not None:
                backends.setdefault(c, []).append(b)
        why = "pruned (--golden-prune): " + "; ".join(
            f"{c}{'' if b is None else f' [{b}]'}: {w}" for v, c, w, b in sorted(state.unused, key=str) if v == version)
        where = (store.root / version).resolve()
        try:
            gone = store.remove(version, list(cases), why) if cases else []
            dropped = store.remove_backends(version, backends, why) if backends else []
        except (GoldenError, OSError) as exc:
            state.writes.append(f"could not prune {where}: {exc}")
            continue
        if gone:
            state.writes.append(f"pruned {len(gone)} unused golden(s) from {where}: " + ", ".join(gone))
        if dropped:
            state.writes.append(f"pruned {len(dropped)} unused backend golden(s) from {where}: " + ", ".join(dropped))


def _unused(state: GoldenSession) -> list[tuple[str, str, str, str | None]]:
    """Goldens no test used, counting only tests that were selected and passed.

    A golden written by the fixture records its test (owner). It is unused when its owner
    passed without using it, or when its owner's file was collected but the owner no
    longer exists; a backend's expected output is unused when its owner passed without
    asking for that backend (and the run did not narrow the backends). A catalog golden is
    unused when its case left the catalog. Goldens of deselected, skipped or failed tests
    are never called unused.
    """
    from harness.goldens.store import GoldenStore

    store = GoldenStore(state.golden_dir)
    found = []
    for version in store.versions()[0]:
        golden = store.open(version)
        if golden.manifest_error:
            continue
        for case_id, entry in golden.cases.items():
            owner = entry.owner
            if (version, case_id) in state.used:
                if owner and owner in state.passed and not state.backends:
                    found += [(version, case_id, f"{owner} passed without asking for {backend}", backend)
                              for backend in entry.backends
                              if entry.made(backend) and (version, case_id, backend) not in state.used_backends]
                continue
            if owner:
                file = owner.split("::", 1)[0]
                if owner in state.passed:
                    found.append((version, case_id, f"{owner} passed without using it", None))
                elif owner not in state.collected and file in state.collected_files and file not in state.partial_files:
                    found.append((version, case_id, f"{owner} no longer exists", None))
            elif state.catalog_ids and case_id not in state.catalog_ids:
                found.append((version, case_id, "the case is no longer in the catalog", None))
    return found


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state: GoldenSession = config.stash.get(SESSION, None)
    if state is None or state.worker or not (state.results or state.writes or state.unused or state.not_current
                                             or state.dropped_kinds):
        return
    tr = terminalreporter
    tr.section("golden summary")
    if state.results:
        from harness.replaying.results import rounding_summary

        tr.write_line(_counts_table(state.results))
        rounding = rounding_summary(state.results)
        if rounding:
            tr.write_line(rounding)
    warned = _warning_lines(state.results)
    if warned and config.option.verbose > 0:
        for line in warned:
            tr.write_line(line)
    elif warned:
        tr.write_line(warned[0].rstrip(":") + "; -v lists them")
    for line in state.writes:
        tr.write_line(line)
    if state.not_current:
        from harness.pytest_plugin.session import runtime

        tr.write_line(f"{len(state.not_current)} golden test(s) have no golden for torch {runtime()} yet; their "
                      f"older goldens were replayed (create them: {state.command(None, '--golden-update-new-only')}; "
                      "make this a failure: --golden-require-current):")
        for case_id, newest, nodeid in sorted(state.not_current):
            tr.write_line(f"  {case_id}: newest golden {newest} ({nodeid})")
    _unused_lines(tr, state, config.option.verbose > 0)
    if state.report is not None and state.results:
        tr.write_line(f"golden report: {state.report}")


def _unused_lines(tr, state: GoldenSession, verbose: bool) -> None:
    """Unused goldens and artifact kinds no test asks for: a line, the list under -v; in CI (where
    they fail the run) always the list, with the command that prunes them."""
    lines = [f"  {(state.golden_dir / v / c).resolve()}" + (f" [{b}]" if b else "") + f": {why}"
             for v, c, why, b in state.unused]
    lines += [f"  {(state.golden_dir / v / c).resolve()} [{k}]: {why}" for v, c, k, why in state.dropped_kinds]
    if not lines or state.prune:
        return
    prune = state.command(None, "--golden-prune")
    what = f"{len(state.unused)} unused golden(s) and {len(state.dropped_kinds)} artifact kind(s) no test asks for"
    if state.ci:
        tr.write_line(f"FAILED in CI: {what} (prune them on a developer machine: {prune}):")
    else:
        tr.write_line(f"{what} (remove them: {prune}" + (")" if verbose else "; -v lists them)") + (":" if verbose else ""))
    for line in lines if (verbose or state.ci) else ():
        tr.write_line(line)


def _warning_lines(results: list[dict], shown: int = 8) -> list[str]:
    """The distinct warnings golden models raised while they were checked, most frequent first:
    for a compatibility check an API being deprecated is a finding, so it is shown, not swallowed."""
    counts = Counter(w for r in results for w in r.get("warnings") or ())
    if not counts:
        return []
    lines = [f"{len(counts)} distinct warning(s) raised by the checked models and their goldens "
             "(per result in --golden-report):"]
    lines += [f"  {n:>4} × {text[:160]}" for text, n in counts.most_common(shown)]
    if len(counts) > shown:
        lines.append(f"  ... {len(counts) - shown} more in --golden-report")
    return lines


def _counts_table(results: list[dict]) -> str:
    from tabulate import tabulate

    from harness.replaying.results import VERDICTS

    counts = Counter((r["golden_version"], r["backend"], r["verdict"]) for r in results)
    keys = sorted({(v, b) for v, b, _ in counts})
    present = [v for v in VERDICTS if any(k[2] == v for k in counts)]
    rows = [[v, b, *(counts[(v, b, verdict)] or "" for verdict in present)] for v, b in keys]
    return tabulate(rows, headers=["golden", "backend", *present], tablefmt="simple")
