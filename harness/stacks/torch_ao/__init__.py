"""The torch.ao stack (legacy, deprecated, still in production everywhere): eager, FX, JIT and
on-device quantization with torch.ao.quantization, shipped as state_dicts, TorchScript, packages,
``.pt2`` and ``.ptl`` files. Its release axis is torch's; from torch 2.10 its PT2E flow needs
torchao, where PT2E moved.

Importing this package imports no torch (the release axis is read before torch is installed);
its flows import it when first asked for."""

from __future__ import annotations

from harness.stacks.torch_ao import releases


class TorchAO:
    name = "torch.ao"
    description = "torch.ao.quantization: eager, FX, JIT, on-device and PT2E flows (deprecated)"
    libraries = ()
    operators = frozenset()

    @property
    def flows(self):
        from harness.stacks.torch_ao.flows import FLOWS  # imports torch: deferred so the release axis can be read without it

        return FLOWS

    @property
    def successors(self):
        """What legacy users move to (harness.making.migration)."""
        from harness.stacks.torch_ao.successors import SUCCESSORS  # imports torch: deferred

        return SUCCESSORS

    def packages(self, torch: str) -> list[str]:
        return releases.packages(torch)

    def versions(self) -> dict[str, str]:
        return {}

    def library_problem(self, library: str) -> str | None:
        return f"the torch.ao stack has no library {library!r}"

    def set_label(self, torch: str) -> str | None:
        return None  # part of torch itself

    def torch_for(self, release: str, torch: str) -> str | None:
        return None  # no library of its own


STACK = TorchAO()
