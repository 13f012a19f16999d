"""Where each torch.ao quantization API of this stack lives in each torch release.

torch.ao's own namespaces (``ao()``, ``nn_quantized()``, ``quantize_fx()``) are torch's and live
in harness.compat, which the reference kernels share; what only this stack's flows and fixtures
use lives here: PT2E's entry points (torch.ao until 2.9, torchao from 2.10), the on-device
dynamic PTQ entry point, and PyTorch's package-test model.
"""

from __future__ import annotations

import functools

import torch
from packaging.version import Version

from harness.compat import torch_release
from harness.notices import silent_import
from harness.stacks.torch_ao.releases import PT2E_IN_TORCHAO
#: first torch release with PT2E (prepare_pt2e / convert_pt2e)
PT2E_SINCE = "2.1"


class PT2E:
    """The PT2E entry points of this torch: prepare/convert, the x86 quantizer, capture."""

    def __init__(self, quantize_pt2e, x86_quantizer, move_to_eval, where: str):
        self.prepare_pt2e = quantize_pt2e.prepare_pt2e
        self.prepare_qat_pt2e = quantize_pt2e.prepare_qat_pt2e
        self.convert_pt2e = quantize_pt2e.convert_pt2e
        self.x86 = x86_quantizer
        self.move_to_eval = move_to_eval
        self.where = where

    def quantizer(self, is_qat: bool = False):
        config = self.x86.get_default_x86_inductor_quantization_config(is_qat=is_qat)
        return self.x86.X86InductorQuantizer().set_global(config)

    @staticmethod
    def capture(model, args):
        """The pre-dispatch graph PT2E quantizes: export_for_training's, or export's from 2.9 on."""
        if Version(torch_release()) >= Version("2.9"):
            return torch.export.export(model, args).module()
        if hasattr(torch.export, "export_for_training"):  # 2.5 - 2.8
            # strict (dynamo) capture: torch.ao's convert_pt2e folds QAT conv-bn by the
            # source_fn_stack metadata only dynamo records (KeyError in 2.8 otherwise)
            return torch.export.export_for_training(model, args, strict=True).module()
        from torch._export import capture_pre_autograd_graph  # 2.1 - 2.4

        return capture_pre_autograd_graph(model, args)


@functools.cache
def pt2e() -> PT2E:
    """PT2E from torchao (torch >= 2.10) or torch.ao.quantization (2.1 - 2.9); ImportError says why."""
    if Version(torch_release()) >= Version(PT2E_IN_TORCHAO):
        try:
            with silent_import():
                import torchao.quantization.pt2e as ao_pt2e
                import torchao.quantization.pt2e.quantize_pt2e as qp
                import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
        except ImportError as exc:
            raise ImportError(f"pt2e on torch >= {PT2E_IN_TORCHAO} needs torchao "
                              f"(pip install 'bc-harness[pt2e]'): {exc}") from exc
        return PT2E(qp, x86, ao_pt2e.move_exported_model_to_eval, "torchao.quantization.pt2e")
    import torch.ao.quantization.quantize_pt2e as qp
    import torch.ao.quantization.quantizer.x86_inductor_quantizer as x86

    return PT2E(qp, x86, torch.ao.quantization.move_exported_model_to_eval, "torch.ao.quantization")


def pt2e_problem() -> str | None:
    """Why this torch cannot make or run PT2E models, or None."""
    if Version(torch_release()) < Version(PT2E_SINCE):
        return f"pt2e (prepare_pt2e / convert_pt2e) needs torch >= {PT2E_SINCE}"
    try:
        pt2e()
    except ImportError as exc:
        return str(exc)
    return None


def ondevice_dynamic_jit():
    """torch.ao.quantization.quantize_jit._quantize_ondevice_dynamic_jit."""
    from torch.ao.quantization.quantize_jit import _quantize_ondevice_dynamic_jit

    return _quantize_ondevice_dynamic_jit


def linear_relu_functional():
    """PyTorch's LinearReluFunctional, the module its package BC test saves."""
    from torch.testing._internal.quantization_torch_package_models import LinearReluFunctional

    return LinearReluFunctional
