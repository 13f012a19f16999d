"""The bar for benchmarks/replay_scale.py: load every artifact of a golden set and run its
forward on every backend that has a golden, and nothing else.

    python benchmarks/_bare_loop.py GOLDEN_SET_DIR FIXTURES_DIR

It uses the harness's own loaders (a state_dict needs today's module tree; an FX package
re-runs its conversion), because that is the work a replay cannot avoid. It skips what the
harness adds: checksums, expected outputs, comparison, reference kernels, the report. It runs
in one process, so it leaves out what a [[crash]] entry of known-drifts.toml says crashes on this
CPU (the harness replays those in a worker that it replaces).
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


def main(golden_set: Path, fixtures: Path) -> int:
    warnings.simplefilter("ignore")  # torch's deprecation chatter would cost the loop its printing
    manifest = json.loads((golden_set / "manifest.json").read_text())
    known = load_known(golden_set.parent)
    runs = 0
    for case in load_catalog(fixtures):
        entry = manifest["cases"].get(case.id)
        if not entry or entry.get("skipped"):
            continue
        example = load_weights((golden_set / case.id / "input.pt").read_bytes(), trusted=True)
        for kind in entry["artifacts"]:
            data = (golden_set / case.id / file_name(kind)).read_bytes()
            for backend, status in entry["backends"].items():
                if status != "ok" or expected_crash(known, golden_set.name, case.id, kind, backend):
                    continue
                with using(backend):
                    model = KINDS[kind].load(case, data, example, trusted=True)
                    if case.check_numerics:
                        case.forward(model, example)
                runs += 1
    print(f"{runs} artifact runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
