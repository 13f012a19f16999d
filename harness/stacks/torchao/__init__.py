"""The torchao stack: ``quantize_`` configs on float modules, tensor-subclass state_dicts and
``.pt2`` programs. Its release axis is the (torch, torchao) pair (harness.stacks.torchao.releases).

Importing this package imports neither torch nor torchao (the release axis is read before torch is
installed); its flows and compat import them when first asked for."""

from __future__ import annotations

from harness.stacks.torchao import releases


class TorchAOStack:
    name = "torchao"
    description = "torchao's quantize_ configs: tensor-subclass checkpoints and torch.export programs"
    #: its checkpoints name torchao's tensor subclasses, registered as safe globals by torchao itself
    libraries = ("torchao",)
    #: the nightly rows of torchao's own release axis: torch 2.13.0 with 0.17.0, beside the torch213
    #: row's 0.18.0 (its pair); a set made there is 2.13.0+torchao.0.17.0
    matrix_rows = {"torch213-torchao017": "2.13.0+torchao.0.17.0"}
    operators = frozenset({"torchao::choose_qparams_affine", "torchao::dequantize_affine",
                           "torchao::quantize_affine"})

    @property
    def flows(self):
        from harness.stacks.torchao.flows import FLOWS  # imports torch: deferred so the release axis can be read without it

        return FLOWS

    def packages(self, torch: str) -> list[str]:
        return releases.packages(torch)

    def versions(self) -> dict[str, str]:
        from harness.stacks.torchao.compat import version

        found = version()
        return {"torchao": found} if found else {}

    def library_problem(self, library: str) -> str | None:
        from harness.stacks.torchao.compat import problem

        return problem() if library == "torchao" else f"the torchao stack has no library {library!r}"

    def pairs(self, release: str, torch: str) -> bool:
        return releases.pairs(release, torch)

    def set_label(self, torch: str) -> str | None:
        installed = self.versions().get("torchao")
        if installed is None or installed == releases.torchao_for(torch):
            return None
        return "torchao." + installed.split("+", 1)[0]


STACK = TorchAOStack()
