"""The torchao stack: ``quantize_`` configs on float modules, tensor-subclass state_dicts and
``.pt2`` programs. Its release axis is the (torch, torchao) pair (harness.stacks.torchao.releases).

Importing this package imports neither torch nor torchao (the release axis is read before torch is
installed); its flows and compat import them when first asked for."""

from __future__ import annotations

from harness.stacks.torchao import releases
from harness.versions import library_label


class TorchAOStack:
    name = "torchao"
    description = "torchao's quantize_ configs: tensor-subclass checkpoints and torch.export programs"
    #: its checkpoints name torchao's tensor subclasses, registered as safe globals by torchao itself
    libraries = ("torchao",)
    #: the nightly rows of torchao's own release axis: torch 2.13.0 with 0.17.0, beside the torch213
    #: row's 0.18.0 (its pair); a set made there is 2.13.0+torchao.0.17.0
    matrix_rows = {"torch213-torchao017": "2.13.0+torchao.0.17.0"}
    #: what torchao's safetensors metadata (torchao.prototype.safetensors) may name as a type: its
    #: CPU tensor classes and the attribute types they carry; a safetensors golden naming anything
    #: else is refused before torchao builds it (torchao's own allowlist is longer: MX, NVFP4, CUDA)
    safetensors_types = frozenset({"Int8Tensor", "IntxUnpackedToInt8Tensor", "Float8Tensor", "Int4Tensor",
                                   "QuantizeTensorToInt8Kwargs", "QuantizeTensorToFloat8Kwargs", "Float8MMConfig",
                                   "PerRow", "PerTensor", "MappingType", "KernelPreference"})
    #: its quantize / dequantize primitives as .pt2 programs call them (0.13's float8 ones by the
    #: names it had then; 0.18 renamed them *_non_decomposed, and a 0.13 program fails to load there)
    operators = frozenset({"torchao::choose_qparams_affine", "torchao::dequantize_affine", "torchao::quantize_affine",
                           "torchao::choose_scale_float8", "torchao::dequantize_affine_float8",
                           "torchao::quantize_affine_float8", "torchao::dequantize_affine_float8_non_decomposed",
                           "torchao::quantize_affine_float8_non_decomposed"})

    @property
    def flows(self):
        from harness.stacks.torchao.flows import FLOWS  # imports torch: deferred so the release axis can be read without it

        return FLOWS

    @property
    def successors(self):
        """What legacy users move to (harness.making.migration)."""
        from harness.stacks.torchao.successors import SUCCESSORS  # imports torch: deferred

        return SUCCESSORS

    def packages(self, torch: str) -> list[str]:
        return releases.packages(torch)

    def versions(self) -> dict[str, str]:
        from harness.stacks.torchao.compat import version

        found = version()
        return {"torchao": found} if found else {}

    def library_problem(self, library: str) -> str | None:
        from harness.stacks.torchao.compat import problem

        return problem() if library == "torchao" else f"the torchao stack has no library {library!r}"

    def torch_for(self, release: str, torch: str) -> str | None:
        return releases.torch_for(release, torch)

    def set_label(self, torch: str) -> str | None:
        return library_label("torchao", self.versions().get("torchao"), releases.torchao_for(torch))


STACK = TorchAOStack()
