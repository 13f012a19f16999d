"""The property tests' calls of torch's native kernels, made in a crash-safe child (harness.sandbox).

Random geometries reach native kernels in corners that can crash the process (oneDNN's AVX512
convolution does, README: Findings). Called in the test's own process, such a crash kills the
pytest worker; called here, it fails the test as NativeCrash, naming the call, and hypothesis
reports the example. A crash that is a known torch defect (KNOWN_CRASHES: the op, the backends,
the geometry and the CPUs) lets a test step over that example instead, and say so.
"""

from __future__ import annotations

from hypothesis import event, reject

from harness.sandbox import Crashed, shared


class NativeCrash(AssertionError):
    """A native call killed the child that made it."""

    def __init__(self, call: str, cause: str):
        super().__init__(f"{call} crashed the process that ran it: {cause}")
        self.call, self.cause = call, cause


def native(function, *args):
    """``function(*args)`` (module-level, with picklable arguments) in this process's crash-safe
    child: its value, or NativeCrash."""
    try:
        return shared().call(function, *args)
    except Crashed as exc:
        raise NativeCrash(f"{function.__name__}{_brief(args)}", exc.cause) from None


def _brief(args) -> str:
    parts = [f"tensor{tuple(a.shape)}" if hasattr(a, "shape") else repr(a) for a in args]
    return "(" + ", ".join(parts)[:300] + ")"


def _onednn_avx512_thin_conv(op: str, backend: str, case) -> bool:
    """oneDNN's AVX512 convolution (the x86 and onednn backends) writes through a null pointer
    when the last spatial dimension is one wide, with kernel 1, stride 2, dilation 2 and
    padding 1 (torch 2.13.0; whether a call crashes also depends on the primitives the process
    made before, so the same call may pass in a process that has run others)."""
    from harness import machine

    dims, groups, c, o, k, stride, dil, pad, size, *_ = case
    return (op == "conv" and backend in ("x86", "onednn") and "avx512f" in machine.current()["isa"]
            and (size[-1], k[-1], stride[-1], dil[-1], pad[-1]) == (1, 1, 2, 2, 1))


#: torch defects a property test may meet: (name, predicate(op, backend, geometry))
KNOWN_CRASHES = [("oneDNN's AVX512 convolution on a one-wide, strided, dilated, padded input",
                  _onednn_avx512_thin_conv)]


def step_over_known(crash: NativeCrash, op: str, backend: str, case) -> None:
    """Reject the example where ``crash`` is a known defect (hypothesis draws another and counts
    it in its statistics); otherwise the crash fails the test."""
    for name, matches in KNOWN_CRASHES:
        if matches(op, backend, case):
            event(f"known native crash stepped over: {name}")
            reject()
    raise crash


def onednn_transposed_conv_misreads(backend: str, case) -> bool:
    """oneDNN's quantized transposed convolution (the onednn engine, and the x86 engine where it
    hands transposed convolutions to oneDNN: CPUs with AVX512-VNNI) gives other integers than
    fbgemm and the float computation when a group's input and output channels differ and both
    exceed one (torch 2.13.0, 2 -> 3 and 3 -> 2 channels; also with ONEDNN_MAX_CPU_ISA=AVX2)."""
    from harness.compat import has_avx512_vnni

    dims, groups, c, o, *_ = case
    on_onednn = backend == "onednn" or (backend == "x86" and has_avx512_vnni())
    return on_onednn and c // groups != o // groups and min(c // groups, o // groups) > 1
