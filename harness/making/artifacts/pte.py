"""pte artifact: the quantized model as an ExecuTorch program (.pte), run by ExecuTorch's runtime.

Made by the case's flow (a flow that keeps no .pte says so) with one method per backend of its
stack; read by the runtime once per golden (``decode``: the program), each backend then loading
its own method (``from_decoded``). The bytes are vetted first (harness.goldens.pte_file): the
runtime sees only a flatbuffer whose every offset, count and size was bounded.
"""

from __future__ import annotations

from harness.making import flows


def save(case, built, example) -> bytes:
    return flows.to_pte(case, flows.runnable(case, built, example))


def decode(case, data: bytes):
    """The runtime's program: the backend-free part of loading."""
    missing = flows.library_problem(case)
    if missing:
        raise RuntimeError(missing)
    return flows.read_pte(case, data)


def from_decoded(case, program):
    """The program, run under the current backend by the flow's runtime."""
    return program


def load(case, data: bytes, example, trusted: bool = False):
    """``trusted`` is accepted for the kinds' common signature: vetting decides what reaches here."""
    return from_decoded(case, decode(case, data))
