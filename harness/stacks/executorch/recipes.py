"""The quantization recipes of the ExecuTorch cases: the XNNPACK quantizer's configurations, and the
torchao recipe ExecuTorch's LLM export lowers. Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """How a float model is quantized before it is lowered. ``group`` set: torchao's 8da4w (int8
    dynamic activations, int4 weights in groups of ``group``), not the XNNPACK quantizer."""

    name: str
    per_channel: bool = True
    dynamic: bool = False
    qat: bool = False
    group: int | None = None

    def describe(self) -> str:
        if self.group:
            return f"torchao Int8DynamicActivationIntxWeightConfig(int4, PerGroup({self.group}))"
        parts = ["per-channel" if self.per_channel else "per-tensor", "dynamic" if self.dynamic else "static"]
        return "XNNPACKQuantizer " + " ".join(parts) + (" QAT (3 SGD steps)" if self.qat else "")


RECIPES = {r.name: r for r in (
    Recipe("static-pc"),
    Recipe("static-pt", per_channel=False),
    Recipe("dynamic", dynamic=True),
    Recipe("qat", qat=True),
    Recipe("8da4w", group=32),
)}
