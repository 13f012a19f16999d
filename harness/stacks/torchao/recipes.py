"""torchao's ``quantize_`` configs as the harness's named recipes, across torchao releases.

A recipe is what a user writes: one config (or a config for the embeddings and one for the
linears) with its arguments, and, where the torchao release has config versions, the version. A
recipe without a version takes the release's default, as a user who names none does (0.18 deleted
version 1 of the int8 configs: such checkpoints stopped loading, pytorch/ao#2752). Release facts (each checked in an environment of that release):

- ``quantize_(model, config)`` takes a config object from 0.9 on; before, a function's result
  (``int8_weight_only()``); ``IntxWeightOnlyConfig`` and ``Int8DynamicActivationIntxWeightConfig``
  exist from 0.12.
- Config versions: in 0.13 only ``IntxWeightOnlyConfig`` (default 1), ``Int4WeightOnlyConfig``
  (default 1) and ``Float8WeightOnlyConfig`` (default 2) take a ``version``; in 0.17 every config
  does, the int8 ones defaulting to 1; in 0.18 all default to 2. A recipe asking for a version a
  release's config does not take is not made there, with that reason.
- On the CPU, ``Int4WeightOnlyConfig`` has no packing format in 0.17 and 0.18 (plain needs the
  CUDA-only mslk, opaque is refused, tile_packed_to_4d takes bfloat16 only), and
  ``Float8DynamicActivationFloat8WeightConfig`` asks for a CUDA device of compute capability 8.9.

Importing this module imports neither torch nor torchao (catalog files import it at load time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Part:
    """One ``quantize_`` call: a config class of ``torchao.quantization`` (by name) with arguments
    ``kwargs(ao, torch)`` (None: its defaults), applied where ``where`` says: to ``linear`` layers
    (quantize_'s default filter) or to ``embedding`` layers."""

    config: str
    kwargs: Callable | None = None
    where: str = "linear"
    #: the function that made the same config before configs were classes (0.9), if any
    before_classes: str | None = None


@dataclass(frozen=True)
class Recipe:
    """A case's ``transform`` in the torchao flow: the flow quantizes the float module with it."""

    name: str
    parts: tuple[Part, ...]
    #: the config version asked for (None: the release's default)
    version: int | None = None
    what: str = ""


def _granularity(ao, granularity: str):
    """``g32``: per group of 32 input channels; ``pc``: per output channel."""
    return ao.granularity.PerGroup(32) if granularity == "g32" else ao.granularity.PerAxis(0)


def _intx(bits: int, granularity: str, mapping: str):
    def kwargs(ao, torch):
        return {"weight_dtype": getattr(torch, f"int{bits}"), "granularity": _granularity(ao, granularity),
                "mapping_type": getattr(ao.quant_primitives.MappingType, mapping.upper())}
    return kwargs


def _da_intx(bits: int, granularity: str):
    def kwargs(ao, torch):
        return {"weight_dtype": getattr(torch, f"int{bits}"), "weight_granularity": _granularity(ao, granularity)}
    return kwargs


_INT8_WO = Part("Int8WeightOnlyConfig", before_classes="int8_weight_only")
_INT8_DA = Part("Int8DynamicActivationInt8WeightConfig", before_classes="int8_dynamic_activation_int8_weight")
_8DA4W = Part("Int8DynamicActivationIntxWeightConfig", _da_intx(4, "g32"))
_EMB4 = Part("IntxWeightOnlyConfig", _intx(4, "g32", "symmetric"), where="embedding")

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("int8-weight-only", (_INT8_WO,), what="int8 weight-only (the release's default config version)"),
    Recipe("int8-weight-only-v1", (_INT8_WO,), 1, "int8 weight-only, config version 1"),
    Recipe("int8-weight-only-v2", (_INT8_WO,), 2, "int8 weight-only, config version 2"),
    Recipe("int8-dynamic", (_INT8_DA,), what="int8 dynamic activation + int8 weight (the release's default version)"),
    Recipe("int8-dynamic-v1", (_INT8_DA,), 1, "int8 dynamic activation + int8 weight, config version 1"),
    # 4-bit weights, symmetric, per group of 32 input channels, kept unpacked in int8 (CPU)
    Recipe("int4-weight-only", (Part("IntxWeightOnlyConfig", _intx(4, "g32", "symmetric")),),
           what="4-bit weight-only, groups of 32"),
    *(Recipe(f"intx-int{bits}-{gran}-{mapping[:4]}", (Part("IntxWeightOnlyConfig", _intx(bits, gran, mapping)),),
             what=f"{bits}-bit weight-only, {'groups of 32' if gran == 'g32' else 'per channel'}, {mapping}")
      for bits, gran, mapping in ((2, "g32", "asymmetric"), (2, "pc", "symmetric"), (4, "pc", "asymmetric"),
                                  (8, "pc", "symmetric"), (8, "g32", "asymmetric"))),
    Recipe("8da4w", (_8DA4W,), what="int8 dynamic activation + 4-bit weight per group of 32 (ExecuTorch's 8da4w)"),
    Recipe("8da8w-pc", (Part("Int8DynamicActivationIntxWeightConfig", _da_intx(8, "pc")),),
           what="int8 dynamic activation + int8 weight per channel"),
    Recipe("emb-int4-8da4w", (_EMB4, _8DA4W),
           what="4-bit embeddings per group of 32 and 8da4w linears (an on-device LLM's recipe)"),
    Recipe("emb-int8-pc", (Part("IntxWeightOnlyConfig", _intx(8, "pc", "symmetric"), where="embedding"),),
           what="int8 embeddings per channel, float linears"),
    Recipe("float8-weight-only", (Part("Float8WeightOnlyConfig"),), what="float8 (e4m3) weight-only"),
    Recipe("float8-dynamic", (Part("Float8DynamicActivationFloat8WeightConfig",
                                   lambda ao, torch: {"granularity": ao.granularity.PerRow()}),),
           what="float8 dynamic activation + float8 weight per row"),
    Recipe("int4-weight-only-cpu", (Part("Int4WeightOnlyConfig", lambda ao, torch: {"group_size": 32}),),
           what="Int4WeightOnlyConfig, groups of 32, its default packing"),
)}
