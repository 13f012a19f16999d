"""Work of torch's that a replay does not use, skipped or done once: the one place the harness
reaches into torch's internals for speed. Each shortcut gives the same models and verdicts as
the work it replaces; where a torch release lacks what a shortcut relies on, it does nothing.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import torch

from harness.compat import ao


def _observed_range(observer):
    return observer.min_val, observer.max_val


@contextlib.contextmanager
def qparams_from_range() -> Iterator[None]:
    """While a model is built only to have a state_dict loaded into it: HistogramObserver takes
    its qparams from the observed min and max instead of its search over the histogram.

    The search is most of what building an FX or eager PTQ skeleton costs (77 ms a call, 1,000
    calls in one replay of the committed goldens), and ``load_state_dict`` then overwrites every
    scale and zero point it chose. Structure and dtypes do not depend on those values. The
    patch is undone on exit; a torch without the method is left as it is.
    """
    with _search_replaced(lambda search: _observed_range):
        yield


@contextlib.contextmanager
def fx_without_stack_traces() -> Iterator[None]:
    """FX tracing (prepare_fx's QuantizationTracer) without a Python stack trace on every node:
    torch.fx.config.do_not_emit_stack_traces, torch's own switch for it (2.x; older releases
    have none and are left as they are).

    The traces are debugging metadata, read by nothing in a replay; collecting them imports
    torch._dynamo and torch._inductor on the first node of a process (2.5 s of a first
    prepare_fx that takes 14 ms without them) and symbolizes a stack for every node after.
    """
    import torch.fx

    config = getattr(torch.fx, "config", None)
    if config is None or not hasattr(config, "do_not_emit_stack_traces"):
        yield
        return
    before = config.do_not_emit_stack_traces
    config.do_not_emit_stack_traces = True
    try:
        yield
    finally:
        config.do_not_emit_stack_traces = before


def assert_close(actual, expected) -> None:
    """torch.testing.assert_close, without importing torch.distributed.tensor where no DTensor
    can exist. torch 2.13's assert_close imports it on every first call to unwrap DTensors
    (1.1 s, a fifth of a replay of PyTorch's layout); an object cannot be a DTensor while the
    module that defines the class is not imported, so the check is skipped exactly then."""
    comparison = sys.modules.get("torch.testing._comparison")
    if comparison is None or not getattr(comparison, "_HAS_DTENSOR", False) \
            or "torch.distributed.tensor" in sys.modules:
        torch.testing.assert_close(actual, expected)
        return
    comparison._HAS_DTENSOR = False
    try:
        torch.testing.assert_close(actual, expected)
    finally:
        comparison._HAS_DTENSOR = True


#: HistogramObserver searches done under remembered_histogram_searches(), by observer state
_searches: dict = {}
_SEARCHES = 512


@contextlib.contextmanager
def remembered_histogram_searches() -> Iterator[None]:
    """While active, HistogramObserver's search over its histogram is done once per distinct
    observer state: the same model calibrated on the same input and converted under each
    quantized backend (a package's replay, a model's check, generation) searches once, not
    four times, for the same min and max.

    The search is a pure function of the observer: the key is its every buffer (bytes, dtype,
    shape) and every plain attribute (bins, dst_nbins, dtype, quant_min, ...), so two
    observers share a result only when nothing the search could read differs. Results are
    handed out as copies.
    """
    def remembering(search):
        def remembered(self):
            key = (search, _observer_state(self))  # the search in force: qparams_from_range's is another
            if key not in _searches:
                if len(_searches) >= _SEARCHES:
                    _searches.pop(next(iter(_searches)))
                _searches[key] = search(self)
            return tuple(t.clone() for t in _searches[key])

        return remembered

    with _search_replaced(remembering):
        yield


@contextlib.contextmanager
def _search_replaced(replacement) -> Iterator[None]:
    """HistogramObserver's search replaced, while active, by ``replacement(search in force)``;
    a torch without the method is left as it is."""
    observer = getattr(ao(), "HistogramObserver", None)
    search = getattr(observer, "_non_linear_param_search", None)
    if search is None:  # pragma: no cover - every release we replay has it
        yield
        return
    observer._non_linear_param_search = replacement(search)
    try:
        yield
    finally:
        observer._non_linear_param_search = search


_PLAIN = (bool, int, float, str, type(None), torch.dtype, torch.qscheme)


def _observer_state(module) -> tuple:
    buffers = tuple((name, t.dtype, tuple(t.shape), bytes(t.detach().contiguous().flatten().view(torch.uint8).tolist()))
                    for name, t in module._buffers.items() if t is not None)
    plain = tuple(sorted((k, v) for k, v in vars(module).items() if isinstance(v, _PLAIN)))
    return type(module), buffers, plain
