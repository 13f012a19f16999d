"""Where each torchao API lives in each torchao release.

torchao is optional: the torchao flow's cases need it to be made, and its goldens need it to be
replayed. Release facts this module encodes (each checked in an environment of that release):

- ``quantize_(model, config)`` takes a config object from 0.9 on (``Int8WeightOnlyConfig()``);
  before, a function's result (``int8_weight_only()``); ``IntxWeightOnlyConfig`` exists from 0.12.
- torchao registers its tensor subclasses (and the enums and layouts they pickle) as torch's
  safe globals when imported, in the releases that do: a checkpoint loads with
  ``weights_only=True`` exactly when every class it names is registered by the torchao installed.
- ``torch.export`` of a model with tensor-subclass weights needs ``unwrap_tensor_subclass`` first
  in releases before 0.8 (``torchao.utils``); later releases export the subclass as it is.
"""

from __future__ import annotations

import torch
from packaging.version import InvalidVersion, Version

from harness.compat import requirement_problem

#: the harness's name of a torchao recipe -> (config class from 0.9, function before 0.9, kwargs)
#: kwargs is a function of the torchao module giving the arguments, None for the defaults
RECIPES = {
    "int8-weight-only": ("Int8WeightOnlyConfig", "int8_weight_only", None),
    "int8-dynamic": ("Int8DynamicActivationInt8WeightConfig", "int8_dynamic_activation_int8_weight", None),
    # 4-bit weights, symmetric, per group of 32 input channels, kept unpacked in int8 (CPU)
    "int4-weight-only": ("IntxWeightOnlyConfig", None, lambda ao: {
        "weight_dtype": torch.int4, "granularity": ao.granularity.PerGroup(32)}),
}
CONFIGS_SINCE = "0.9"
UNWRAP_BEFORE = "0.8"


class Unavailable(Exception):
    """This torchao has no such recipe (or no torchao is installed)."""


def problem() -> str | None:
    """Why torchao cannot be used here (not installed, or it fails to import), or None. Importing
    it registers its safe globals and its ops (torch.ops.torchao.*)."""
    return requirement_problem("torchao")


def version() -> str | None:
    if problem():
        return None
    import torchao

    return getattr(torchao, "__version__", "unknown")


def _at_least(bound: str) -> bool:
    try:
        return Version(Version(version()).base_version) >= Version(bound)
    except (InvalidVersion, TypeError):
        return True  # a source build without a version: the newest API


def config(recipe: str):
    """The object ``quantize_`` takes for ``recipe`` in this torchao release."""
    if problem():
        raise Unavailable(problem())
    import torchao.quantization as tq

    class_name, function_name, kwargs = RECIPES[recipe]
    name = class_name if _at_least(CONFIGS_SINCE) else function_name
    make = getattr(tq, name, None) if name else None
    if make is None:
        raise Unavailable(f"torchao {version()} has no {class_name} (recipe {recipe})")
    return make(**(kwargs(tq) if kwargs else {}))


def quantize(model, recipe: str):
    """``model`` quantized in place by torchao's ``quantize_`` with ``recipe``; returns it."""
    from torchao.quantization import quantize_

    quantize_(model, config(recipe))
    return model


def exportable(model):
    """The model as torch.export takes it in this release (subclass weights unwrapped before 0.8)."""
    if _at_least(UNWRAP_BEFORE):
        return model
    from torchao.utils import unwrap_tensor_subclass

    return unwrap_tensor_subclass(model)


def registered_safe_globals() -> frozenset[str]:
    """What this process's torch and the installed torchao (imported here) admit to weights_only
    loading beyond torch's built-ins."""
    from harness.compat import registered_safe_globals as registered

    problem()  # imports torchao when it is installed, so its registrations are made
    return registered()
