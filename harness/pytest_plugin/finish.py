"""The end of a session: the report file, unused goldens (and pruning them), the golden summary."""

from __future__ import annotations

import pytest

from .session import SESSION, GoldenSession

def pytest_sessionfinish(session, exitstatus):
    config = session.config
    state: GoldenSession = config.stash.get(SESSION, None)
    if state is None:
        return
    if state.worker:
        config.workeroutput["bc_harness"] = state.export()
        return
    if state.results and state.report is not None:
        import json

        state.report.parent.mkdir(parents=True, exist_ok=True)
        state.report.write_text(json.dumps(state.results, indent=1) + "\n", encoding="utf-8")
    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        return
    if state.layout_class.writable and (state.results or state.catalog):
        state.unused = _unused(state)
        if state.prune and state.unused:
            from ..store import GoldenStore

            from ..store import GoldenError

            store = GoldenStore(state.golden_dir)
            for version in sorted({v for v, _, _ in state.unused}):
                unused = {c: why for v, c, why in state.unused if v == version}
                try:
                    gone = store.remove(version, list(unused), "pruned (--golden-prune): "
                                        + "; ".join(f"{c}: {why}" for c, why in sorted(unused.items())))
                except (GoldenError, OSError) as exc:
                    state.writes.append(f"could not prune {store.root / version}: {exc}")
                    continue
                state.writes.append(f"pruned {len(gone)} unused golden(s) from {(store.root / version).resolve()}: "
                                    + ", ".join(gone))


def _unused(state: GoldenSession) -> list[tuple[str, str, str]]:
    """Goldens no test used, counting only tests that were selected and passed.

    A golden written by the fixture records its test (owner). It is unused when its owner
    passed without using it, or when its owner's file was collected but the owner no
    longer exists. A catalog golden is unused when its case left the catalog. Goldens of
    deselected, skipped or failed tests are never called unused.
    """
    from ..store import GoldenStore

    store = GoldenStore(state.golden_dir)
    found = []
    for version in store.versions()[0]:
        golden = store.open(version)
        if golden.manifest_error:
            continue
        for case_id, entry in golden.cases.items():
            if (version, case_id) in state.used:
                continue
            owner = entry.owner
            if owner:
                if owner in state.passed:
                    found.append((version, case_id, f"{owner} passed without using it"))
                elif owner not in state.collected and owner.split("::", 1)[0] in state.collected_files:
                    found.append((version, case_id, f"{owner} no longer exists"))
            elif state.catalog_ids and case_id not in state.catalog_ids:
                found.append((version, case_id, "the case is no longer in the catalog"))
    return found


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state: GoldenSession = config.stash.get(SESSION, None)
    if state is None or state.worker or not (state.results or state.writes or state.unused):
        return
    tr = terminalreporter
    tr.section("golden summary")
    if state.results:
        from ..results import rounding_summary

        tr.write_line(_counts_table(state.results))
        rounding = rounding_summary(state.results)
        if rounding:
            tr.write_line(rounding)
    for line in state.writes:
        tr.write_line(line)
    if state.unused:
        tr.write_line(f"{len(state.unused)} unused golden(s)" + ("" if state.prune else
                                                                  " (remove them with --golden-prune):"))
        for version, case_id, why in state.unused:
            tr.write_line(f"  {version}/{case_id}: {why}")
    if state.report is not None and state.results:
        tr.write_line(f"golden report: {state.report}")


def _counts_table(results: list[dict]) -> str:
    from collections import Counter

    from tabulate import tabulate

    from ..results import VERDICTS

    counts = Counter((r["golden_version"], r["backend"], r["verdict"]) for r in results)
    keys = sorted({(v, b) for v, b, _ in counts})
    present = [v for v in VERDICTS if any(k[2] == v for k in counts)]
    rows = [[v, b, *(counts[(v, b, verdict)] or "" for verdict in present)] for v, b in keys]
    return tabulate(rows, headers=["golden", "backend", *present], tablefmt="simple")
