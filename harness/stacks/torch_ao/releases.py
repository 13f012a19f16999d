"""The torch.ao stack's release facts: what it installs beside each torch release. Imports no torch
(read before torch is installed)."""

from __future__ import annotations

from packaging.version import Version

#: from this torch release on, PT2E lives in torchao (torchao.quantization.pt2e), not torch.ao
PT2E_IN_TORCHAO = "2.10"


def packages(torch: str) -> list[str]:
    """PT2E lives in torchao from torch 2.10 on: any torchao release that installs beside torch."""
    if torch == "nightly" or Version(torch) >= Version(PT2E_IN_TORCHAO):
        return ["torchao"]
    return []
