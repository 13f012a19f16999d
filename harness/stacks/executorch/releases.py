"""ExecuTorch's release axis: which release pairs with each torch release, and which torch each
release's runtime was built against. Imports no torch (read before torch is installed).

Each ExecuTorch wheel links one torch minor release (1.3.1's runtime fails to load beside torch
2.13 on an undefined libtorch symbol), so a release runs only beside the torch it was built
against: older releases in isolated environments, as other torch releases are.
"""

from __future__ import annotations

from packaging.version import Version

#: torch minor -> the ExecuTorch release installed beside it: the newest built against it
EXECUTORCH = {"2.11": "1.2.0", "2.12": "1.3.1", "2.13": "1.5.1"}

#: ExecuTorch release -> the torch release its runtime was built against (the wheels' own
#: requirement: torch>=2.11 for 1.2.0, >=2.12.0a0 for 1.3.1, >=2.13.0a0 for 1.4; 1.5 declares
#: none and runs beside 2.13). Before 1.2 each release pinned a torchao that pairs with no torch
#: release of the torchao stack's table, so they are not tried.
BUILT_AGAINST = {"1.2.0": "2.11.0", "1.3.1": "2.12.1", "1.4.0": "2.13.0", "1.4.1": "2.13.0", "1.5.0": "2.13.0",
                 "1.5.1": "2.13.0"}

#: what the runtime and the XNNPACK lowering import beside torch and torchao; ExecuTorch's own
#: declared dependencies (coremltools, scikit-learn, pandas, hydra: other backends and its LLM
#: tooling, a 1.5 GB environment) are never installed (the package is installed alone)
NEEDS = ("flatbuffers>=24", "ruamel.yaml>=0.17", "numpy>=1.26", "pyyaml>=6")

#: ExecuTorch's promise: a .pte keeps running on the runtime releases of the next minor release
PROMISED_MINORS = 1


def executorch_for(torch: str) -> str | None:
    """The ExecuTorch release installed beside torch ``torch`` (None: none pairs with it)."""
    v = Version(torch)
    return EXECUTORCH.get(f"{v.major}.{v.minor}")


def torch_for(release: str, running: str) -> str | None:
    """The torch release ExecuTorch ``release`` runs beside: the one it was built against (the
    running torch where that is the same minor), None where unknown (a bisection skips it)."""
    built = BUILT_AGAINST.get(str(Version(release).public))
    if built is None:
        return None
    run = Version(Version(running).public)
    return str(run) if (run.major, run.minor) == (Version(built).major, Version(built).minor) else built


def packages(torch: str) -> list[str]:
    """ExecuTorch pinned to the release that pairs with torch ``torch``, and what it needs."""
    pair = None if torch == "nightly" else executorch_for(torch)
    return [f"executorch=={pair}", *NEEDS] if pair else []


def promised(made_with: str, runtime: str) -> bool:
    """Whether ExecuTorch promises that a .pte written by ``made_with`` runs on ``runtime``: the
    same release or a newer one up to the next minor."""
    made, run = Version(made_with), Version(runtime)
    return run >= made and (run.major, run.minor) <= (made.major, made.minor + PROMISED_MINORS)
