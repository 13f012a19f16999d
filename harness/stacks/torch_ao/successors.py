"""The torch.ao stack's successor: PT2E with the X86 Inductor quantizer, shipped as a .pt2 program
(its prepare/convert moved to torchao in torch 2.10; harness.stacks.torch_ao.compat finds them)."""

from __future__ import annotations

import io

from harness.stacks import Successor
from harness.stacks.torch_ao.compat import pt2e, pt2e_problem


class X86PT2E(Successor):
    name = "pt2e-x86"
    artifact = ".pt2"
    description = ("PT2E with X86InductorQuantizer's default config (static, or is_dynamic), saved by "
                   "torch.export.save and loaded back, run by torch (its q/dq graph, not Inductor's kernels)")

    def problem(self):
        return pt2e_problem()

    def make(self, module, example, dynamic: bool):
        import torch

        found = pt2e()
        args = example if isinstance(example, tuple) else (example,)
        config = found.x86.get_default_x86_inductor_quantization_config(is_dynamic=dynamic)
        quantizer = found.x86.X86InductorQuantizer().set_global(config)
        prepared = found.prepare_pt2e(found.capture(module.eval(), args), quantizer)
        prepared(*args)
        converted = found.convert_pt2e(prepared)
        self.check_quantized(converted)
        buffer = io.BytesIO()
        torch.export.save(torch.export.export(converted, args), buffer)
        buffer.seek(0)
        return torch.export.load(buffer).module()


SUCCESSORS = (X86PT2E(),)
