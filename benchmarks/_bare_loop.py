"""The bar for benchmarks/replay_scale.py and targets.py: load every artifact of a golden set
and run its forward on every backend that has a golden, and nothing else.

    python benchmarks/_bare_loop.py GOLDEN_SET_DIR FIXTURES_DIR
    python benchmarks/_bare_loop.py GOLDEN_STORE FIXTURES_DIR   # every set not newer than this torch

It uses the harness's own loaders (a state_dict needs today's module tree; an FX package
re-runs its conversion), because that is the work a replay cannot avoid. It skips what the
harness adds: checksums, expected outputs, comparison, reference kernels, the report. It runs
in one process, so it leaves out what a [[crash]] entry of known-drifts.toml says crashes on this
CPU (the harness replays those in a worker that it replaces). A load or run that fails (a known
load-error of an older set) is counted and the loop goes on: failing is work a replay does too.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from harness.making.artifacts import KINDS
from harness.goldens.layout import file_name
from harness.catalog import load_catalog
from harness.backends import using
from harness.goldens.known import expected_crash
from harness.goldens.known import load as load_known
from harness.goldens.safeload import load_weights


def main(where: Path, fixtures: Path) -> int:
    warnings.simplefilter("ignore")  # torch's deprecation chatter would cost the loop its printing
    cases = load_catalog(fixtures)
    sets = [where] if (where / "manifest.json").is_file() else _sets(where)
    runs = failed = 0
    for golden_set in sets:
        r, f = _one_set(golden_set, cases)
        runs, failed = runs + r, failed + f
    print(f"{runs} artifact runs ({failed} failed) in {len(sets)} golden sets")
    return 0


def _sets(store: Path) -> list[Path]:
    """The store's golden sets that the running torch replays (none newer than it)."""
    import torch

    from harness.versions import parse_version

    here = parse_version(torch.__version__)
    return [d for d in sorted(store.iterdir()) if (d / "manifest.json").is_file()
            and parse_version(d.name) is not None and parse_version(d.name) <= here]


def _one_set(golden_set: Path, cases) -> tuple[int, int]:
    manifest = json.loads((golden_set / "manifest.json").read_text())
    known = load_known(golden_set.parent)
    runs = failed = 0
    for case in cases:
        entry = manifest["cases"].get(case.id)
        if not entry or not isinstance(entry, dict) or entry.get("skipped"):
            continue
        try:
            example = load_weights((golden_set / case.id / "input.pt").read_bytes(), trusted=True)
        except Exception:
            failed += 1
            continue
        for kind in entry.get("artifacts", []):
            try:
                data = (golden_set / case.id / file_name(kind)).read_bytes()
            except (OSError, KeyError):
                failed += 1
                continue
            for backend, status in entry.get("backends", {}).items():
                if status != "ok" or expected_crash(known, golden_set.name, case.id, kind, backend):
                    continue
                try:
                    with using(backend):
                        model = KINDS[kind].load(case, data, example, trusted=True)
                        if case.check_numerics:
                            case.forward(model, example)
                except Exception:
                    failed += 1
                runs += 1
    return runs, failed


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
