"""Splitting a replay into N shards: deterministic, balanced by recorded cost, each unit once.

The unit of work is one case of one golden version (``Unit(version, case)``): its results
share an input, expected outputs and a reference, so they stay together. A whole golden set
that cannot be split (its manifest is unusable, or its directory is named like no torch
version) is one unit with case ``"*"``.

Costs are the seconds each unit took in a recorded replay (``bc-harness replay
--record-costs``), kept beside the goldens in ``replay-costs.json``. A unit with no recorded
cost is estimated from the same case in other versions, else from the median of all. The
split is longest-processing-time-first over those costs with every tie broken by name, so
the same units and the same costs file always give the same shards. No torch here.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from statistics import median

COSTS = "replay-costs.json"
#: A unit's cost when nothing is recorded: the mean unit of the committed store's replay
#: on the 2-core reference machine (replay-costs.json), in seconds.
DEFAULT_COST = 0.115
#: Below this estimated total, a parallel replay loses: starting a worker (spawn, import
#: torch, load the catalog) takes about 3 s.
PARALLEL_MIN_SECONDS = 10.0


def cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, order=True)
class Unit:
    version: str
    case: str  # "*": the whole golden set


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → (K, N) with 1 <= K <= N; ValueError with a one-line reason otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise ValueError(f"shard {text!r} is not K/N (for example 2/4)")
    k, n = int(match[1]), int(match[2])
    if not 1 <= k <= n:
        raise ValueError(f"shard {text!r} needs 1 <= K <= N")
    return k, n


def load_costs(root: Path) -> dict[str, float]:
    """Recorded seconds per ``"<version>/<case>"``; empty when nothing was recorded."""
    from harness.goldens.files import Unreadable, read_inside

    path = Path(root) / COSTS
    try:
        data = json.loads(read_inside(Path(root), COSTS, 16 << 20))
    except Unreadable as exc:
        if exc.missing:
            return {}
        raise ValueError(f"{path} is unreadable: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path} is unreadable: {type(exc).__name__}: {exc}"[:300]) from exc
    costs = data.get("seconds") if isinstance(data, dict) else None
    if not isinstance(costs, dict) or not all(isinstance(v, (int, float)) and 0 <= v < 1e9 for v in costs.values()):
        raise ValueError(f"{path} is not a costs file: it needs {{\"seconds\": {{\"<version>/<case>\": s}}}}")
    return {str(k): float(v) for k, v in costs.items()}


def write_costs(root: Path, measured: dict[Unit, float]) -> Path:
    """Merge measured seconds into the costs file (atomically)."""
    from harness.goldens.store import atomic_write

    costs = load_costs(root)
    costs.update({f"{u.version}/{u.case}": round(s, 3) for u, s in measured.items()})
    path = Path(root) / COSTS
    text = json.dumps({"about": "seconds per (golden version, case) in a recorded replay; balances --shard",
                       "seconds": dict(sorted(costs.items()))}, indent=1)
    atomic_write(path, (text + "\n").encode())
    return path


def estimate(units: list[Unit], costs: dict[str, float]) -> dict[Unit, float]:
    """Each unit's cost: recorded, else the same case's median elsewhere, else the overall median."""
    by_case: dict[str, list[float]] = {}
    for key, seconds in costs.items():
        by_case.setdefault(key.rsplit("/", 1)[-1], []).append(seconds)
    overall = median(costs.values()) if costs else DEFAULT_COST
    found = {}
    for unit in units:
        recorded = costs.get(f"{unit.version}/{unit.case}")
        if recorded is None:
            recorded = median(by_case[unit.case]) if unit.case in by_case else overall
        found[unit] = recorded
    return found


def assign(units: list[Unit], costs: dict[str, float], n: int) -> list[list[Unit]]:
    """Split ``units`` into ``n`` lists: the costliest unit first, each to the least-loaded shard."""
    if n < 1:
        raise ValueError("the number of shards must be at least 1")
    cost = estimate(units, costs)
    shards: list[list[Unit]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for unit in sorted(set(units), key=lambda u: (-cost[u], u)):
        i = min(range(n), key=lambda j: (loads[j], j))
        shards[i].append(unit)
        loads[i] += cost[unit]
    return shards


def auto_jobs(units: list[Unit], costs: dict[str, float]) -> int:
    """Workers for a replay nobody gave -j: every core, unless the work is too small to gain."""
    total = sum(estimate(units, costs).values())
    return cores() if total >= PARALLEL_MIN_SECONDS else 1


def pick(units: list[Unit], costs: dict[str, float], k: int, n: int) -> list[Unit]:
    """The units of shard ``k`` of ``n``, in their given order."""
    mine = set(assign(units, costs, n)[k - 1])
    return [u for u in units if u in mine]
