"""The ExecuTorch stack: PT2E quantization with the XNNPACK quantizer (or a torchao config), lowered
to an ExecuTorch program (``.pte``) and run by ExecuTorch's runtime, as on-device apps ship models.
Its release axis is the ExecuTorch release (harness.stacks.executorch.releases).

Its two backends are the runtime's, not torch's quantized engines: ``xnnpack`` (the program
lowered to the XNNPACK delegate) and ``portable`` (the same quantized program with no delegate,
run on ExecuTorch's portable and quantized kernels). A golden .pte holds both, as two methods.

Importing this package imports neither torch nor ExecuTorch; its flow and compat import them when
first asked for.
"""

from __future__ import annotations

from harness.stacks.executorch import releases
from harness.versions import library_label


class ExecuTorchStack:
    name = "executorch"
    description = "PT2E with the XNNPACK quantizer, lowered to ExecuTorch programs (.pte) and run by its runtime"
    #: its checkpoints name no classes of its own: its files are programs (.pt2, .pte)
    libraries = ("executorch",)
    backends = ("xnnpack", "portable")
    #: installed with --no-deps: its declared dependencies serve its other backends and LLM tools
    install_alone = frozenset({"executorch"})
    #: the delegates a .pte golden may call (harness.goldens.pte_file)
    delegates = frozenset({"XnnpackBackend"})
    #: the nightly row of ExecuTorch's release axis: torch 2.13.0 with 1.4.1, beside the torch213
    #: row's 1.5.1; a set made there is 2.13.0+executorch.1.4.1
    matrix_rows = {"torch213-executorch141": "2.13.0+executorch.1.4.1"}
    #: its own kernels a non-delegated program calls beyond torch's operators (views, dim-order
    #: copies and size arithmetic, in ExecuTorch's own namespaces)
    operators = frozenset({"executorch_prim::et_view", "executorch_prim::add", "executorch_prim::mul",
                           "executorch_prim::sub", "dim_order_ops::_to_dim_order_copy",
                           "dim_order_ops::_clone_dim_order"})

    @property
    def flows(self):
        from harness.stacks.executorch.flows import FLOWS  # imports torch: deferred

        return FLOWS

    @property
    def successors(self):
        """What legacy users move to (harness.making.migration)."""
        from harness.stacks.executorch.successors import SUCCESSORS  # imports torch: deferred

        return SUCCESSORS

    def packages(self, torch: str) -> list[str]:
        return releases.packages(torch)

    def versions(self) -> dict[str, str]:
        from harness.stacks.executorch.compat import version

        found = version()
        return {"executorch": found} if found else {}

    def library_problem(self, library: str) -> str | None:
        from harness.stacks.executorch.compat import problem

        return problem() if library == "executorch" else f"the executorch stack has no library {library!r}"

    def promised(self, made_with: str, runtime: str) -> bool:
        """Whether ExecuTorch promises a .pte of release ``made_with`` runs on runtime ``runtime``."""
        return releases.promised(made_with, runtime)

    def torch_for(self, release: str, torch: str) -> str | None:
        return releases.torch_for(release, torch)

    def set_label(self, torch: str) -> str | None:
        return library_label("executorch", self.versions().get("executorch"), releases.executorch_for(torch))


STACK = ExecuTorchStack()
