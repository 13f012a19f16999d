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

import warnings
from pathlib import Path

import torch
from packaging.version import InvalidVersion, Version

from harness.compat import requirement_problem
from harness.notices import one_line
from harness.stacks.torchao.recipes import RECIPES, Recipe

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


def _recipe(recipe) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else RECIPES[recipe]


def configs(recipe) -> list[tuple[object, object]]:
    """(the object ``quantize_`` takes, its filter_fn or None) for each part of ``recipe`` (a
    Recipe or its name) in this torchao release; Unavailable says why where it has none."""
    if problem():
        raise Unavailable(problem())
    import torchao.quantization as tq

    recipe = _recipe(recipe)
    made = []
    for part in recipe.parts:
        name = part.config if _at_least(CONFIGS_SINCE) else part.before_classes
        make = getattr(tq, name, None) if name else None
        if make is None:
            raise Unavailable(f"torchao {version()} has no {part.config} (recipe {recipe.name})")
        kwargs = part.kwargs(tq, torch) if part.kwargs else {}
        if recipe.version is not None:
            if "version" not in getattr(make, "__dataclass_fields__", {}):
                raise Unavailable(f"torchao {version()}'s {part.config} has no config versions "
                                  f"(recipe {recipe.name} asks for version {recipe.version})")
            kwargs["version"] = recipe.version
        try:
            made.append((make(**kwargs), _FILTERS[part.where]))
        except (ValueError, TypeError, AssertionError, ImportError, NotImplementedError) as exc:
            raise Unavailable(f"torchao {version()}: {part.config}: {one_line(exc)}") from None
    return made


def _embedding(module, fqn) -> bool:
    return isinstance(module, torch.nn.Embedding)


#: where a part applies: None is quantize_'s default (every Linear)
_FILTERS = {"linear": None, "embedding": _embedding}


def describe(recipe) -> str:
    """The recipe's configs as this torchao release makes them, with their config version."""
    parts = []
    for config, where in configs(recipe):
        name = type(config).__name__
        if name == "function":  # before 0.9: a function's result
            name = getattr(config, "__name__", "a function")
        number = getattr(config, "version", None)
        parts.append(name + (f" version {number}" if number is not None else "")
                     + (" on embeddings" if where is _embedding else ""))
    return " + ".join(parts)


def quantize(model, recipe):
    """``model`` quantized in place by torchao's ``quantize_`` with ``recipe``; returns it."""
    from torchao.quantization import quantize_

    for config, where in configs(recipe):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            quantize_(model, config, filter_fn=where) if where else quantize_(model, config)
    return model


def kernel_libraries() -> tuple[list[str], list[str], str | None]:
    """(torchao's C++ libraries shipped, those loaded in this process, why torchao skipped them):
    torchao before 0.17 silently skips them under any torch but its own, and computes differently."""
    import torchao

    files = sorted(Path(torchao.__file__).parent.glob("_C*.so"))
    loaded = {Path(p).resolve() for p in getattr(torch.ops, "loaded_libraries", ())}
    name = lambda f: f.name.split(".", 1)[0]
    skipped = getattr(torchao, "skip_loading_so_files", False)
    why = f"torchao skipped them under torch {torch.__version__}" if skipped else None
    return [name(f) for f in files], [name(f) for f in files if f.resolve() in loaded], why


def kernels() -> str:
    """Whether torchao's C++ libraries are loaded in this process, in one line."""
    if problem():
        return "torchao is not installed"
    shipped, loaded, why = kernel_libraries()
    if not shipped:
        return "none shipped"
    return f"{len(loaded)} of {len(shipped)} loaded" + (f" ({', '.join(loaded)})" if loaded else "") \
        + (f": {why}" if why else "")


def kernels_missing() -> bool:
    """Whether torchao ships C++ libraries that this process did not load."""
    if problem():
        return False
    shipped, loaded, _ = kernel_libraries()
    return len(loaded) < len(shipped)


#: where torchao flattens tensor subclasses for safetensors (0.14 on; it imports numpy)
SAFETENSORS = "torchao.prototype.safetensors.safetensors_support"


def _safetensors_support():
    import importlib

    return importlib.import_module(SAFETENSORS)


def safetensors_problem() -> str | None:
    """Why torchao checkpoints cannot be written or read as safetensors here, or None."""
    for package in ("torchao", "safetensors", "numpy"):
        if requirement_problem(package):
            return requirement_problem(package)
    try:
        _safetensors_support()
    except ImportError as exc:
        return f"torchao {version()} has no safetensors support ({one_line(exc)})"
    return None


def flatten_for_safetensors(state: dict) -> tuple[dict, dict]:
    """torchao's own flattening of a state_dict of tensor subclasses: (plain tensors, metadata)."""
    return _safetensors_support().flatten_tensor_state_dict(state)


def unflatten_from_safetensors(tensors: dict, metadata: dict | None) -> dict:
    """The state_dict that torchao rebuilds from flattened tensors and their metadata."""
    if not metadata:
        return dict(tensors)
    rebuilt = _safetensors_support().unflatten_tensor_state_dict(tensors, metadata)
    if isinstance(rebuilt, tuple):  # (state_dict, what it left as plain tensors) in 0.18
        rebuilt, left = rebuilt
        rebuilt = {**rebuilt, **left}
    return rebuilt


class Oversized(ValueError):
    """A checkpoint's tensor subclass whose side tensors would broadcast past its weight."""


def check_proportions(state: dict) -> None:
    """Refuse a state_dict whose torchao tensors carry a side tensor (a scale, a zero point, an
    activation pre-scale) with more dimensions or more elements than its weight's integers: torchao
    broadcasts it against the input or the weight, so a few bytes in the file could stand for
    gigabytes at run time (a [524288, 1, 1] pre-scale of 2 MiB made a worker take 3.4 GiB). What
    torchao writes never does."""
    for name, tensor in state.items():
        inner = tensor.__tensor_flatten__()[0] if hasattr(tensor, "__tensor_flatten__") else []
        base = getattr(tensor, "qdata", None) if "qdata" in inner else None
        if base is None:
            continue
        for attribute in inner:
            side = getattr(tensor, attribute, None)
            if attribute == "qdata" or not isinstance(side, torch.Tensor):
                continue
            if side.dim() > base.dim() or side.numel() > base.numel():
                raise Oversized(f"{name}.{attribute} has shape {tuple(side.shape)[:8]}, more than its weight's "
                                f"{tuple(base.shape)}: refused before it runs")


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
