"""Everything that names ExecuTorch's (and its quantizer's) modules: what differs between its
releases lives here. Importing this module imports neither torch nor ExecuTorch."""

from __future__ import annotations

import functools
from importlib import metadata

#: the method of a golden .pte that runs under each backend: ``forward`` is lowered to XNNPACK (what
#: apps ship), the other holds the same quantized program without a delegate
METHODS = {"xnnpack": "forward", "portable": "forward_portable"}


def version() -> str | None:
    """The installed ExecuTorch release (read from its metadata: importing it takes seconds)."""
    try:
        return metadata.version("executorch")
    except metadata.PackageNotFoundError:
        return None


def torchao_version() -> str | None:
    """The installed torchao release (PT2E's home, and 8da4w's), from its metadata."""
    try:
        return metadata.version("torchao")
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def problem() -> str | None:
    """Why ExecuTorch cannot lower or run programs here, or None. Its runtime links one torch
    release: beside another it fails to load (an undefined symbol), and that is said here."""
    if version() is None:
        return "ExecuTorch is not installed (pip install --no-deps executorch, beside the torch it pairs with)"
    try:
        runtime()
        import executorch.kernels.quantized  # noqa: F401  (a non-delegated quantized program's kernels)
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: F401
    except Exception as exc:  # ImportError, OSError: a runtime built against another torch
        from harness.notices import one_line

        return f"ExecuTorch {version()} does not load beside this torch: {one_line(exc)}"
    return None


@functools.cache
def runtime():
    """ExecuTorch's Python runtime (executorch.runtime.Runtime)."""
    from executorch.runtime import Runtime

    return Runtime.get()


def xnnpack_quantizer(recipe):
    """The XNNPACK quantizer set up as ``recipe`` (harness.stacks.executorch.recipes) says."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)

    config = get_symmetric_quantization_config(is_per_channel=recipe.per_channel, is_dynamic=recipe.dynamic,
                                               is_qat=recipe.qat)
    return XNNPACKQuantizer().set_global(config)


def pt2e():
    """(prepare_pt2e, prepare_qat_pt2e, convert_pt2e, move_exported_model_to_eval): torchao's PT2E."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    return prepare_pt2e, prepare_qat_pt2e, convert_pt2e, move_exported_model_to_eval


def quantize_8da4w(module, group: int):
    """torchao's Int8DynamicActivationIntxWeightConfig, int4 weights in groups of ``group``, on
    ``module`` in place: the recipe ExecuTorch's LLM export applies before lowering to XNNPACK."""
    import torch
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    quantize_(module, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(group)))
    return module


def lower(program) -> tuple[bytes, str | None]:
    """An ExecuTorch program (.pte bytes) of ``program`` (an ExportedProgram) with a method per
    backend (METHODS), made in one lowering; where the program has no non-delegated form (an
    operator with no ExecuTorch kernel: torchao's 8da4w), the XNNPACK method alone, and why."""
    try:
        return _to_executorch({m: program for m in METHODS.values()},
                              {m: _partitioners(b) for b, m in METHODS.items()}), None
    except Exception as exc:
        from harness.notices import one_line

        data = _to_executorch({METHODS["xnnpack"]: program}, {METHODS["xnnpack"]: _partitioners("xnnpack")})
        return data, f"it has no portable form: {one_line(exc)}"


def _partitioners(backend: str) -> list:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    return [XnnpackPartitioner()] if backend == "xnnpack" else []


def _to_executorch(programs: dict, partitioners: dict) -> bytes:
    import executorch.kernels.quantized  # noqa: F401  (registers the quantized out variants lowering needs)
    from executorch.exir import to_edge_transform_and_lower

    return bytes(to_edge_transform_and_lower(programs, partitioner=partitioners).to_executorch().buffer)


def load_program(data: bytes):
    """The runtime's Program of .pte bytes (vetted before), verified by the runtime itself too."""
    from executorch.runtime import Verification

    import executorch.kernels.quantized  # noqa: F401  (a non-delegated quantized program needs its kernels)

    return runtime().load_program(data, verification=Verification.InternalConsistency)


def method(program, backend: str):
    """``program``'s method for ``backend``; KeyError where the program has none."""
    name = METHODS[backend]
    if name not in program.method_names:
        raise KeyError(f"the program has no {name} method (the {backend} backend's): it has "
                       f"{', '.join(sorted(program.method_names)) or 'none'}")
    return program.load_method(name)
