"""Crash-safe children: work that can crash the process runs in a child, and a child's death is a finding.

torch's native kernels can crash the process that calls them (oneDNN's AVX512 grouped, dilated
convolution segfaults; a crafted golden can do the same), and a hang is as bad. Such work runs in
a child process; the parent only reads what the child sends back:

- ``("at", key)``: the child starts on ``key`` (one result, one stage of a generation);
- ``("item", value)``: something finished;
- ``("end", None)`` or ``("error", text)``: the request is done, or failed with a Python error.

When the child dies (a signal, an exit) or is silent past the timeout, the request raises
:class:`Crashed` with the key it was on and the cause; the next request gets a new child. What a
crash means (a ``crash`` verdict, a backend recorded as crashing) is the caller's to decide.

Children are forked from a server process that has imported torch and the harness and never runs
an operator (multiprocessing's ``forkserver``): a new child costs a fork, not a torch import.
Forking the caller itself is no option: a process whose OpenMP threads have run hangs in the
child's first parallel region. A handler is named ``"module:function"`` and imported in the child,
so nothing here knows what the children do.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Iterator

if sys.platform != "win32":
    # imported with this module, not on first use: a pytester session drops the modules it imported,
    # and a second import would start a second fork server
    import multiprocessing.forkserver  # noqa: F401

#: modules the fork server imports once, so that every child starts with them: ``harness`` first,
#: whose warning filter must precede torch's import
PRELOAD = ["harness", "torch", "harness.replaying.schedule", "harness.making.generate", "harness.reference"]

#: seconds a child may stay silent (on one key, or between two) before it counts as hung
DEFAULT_TIMEOUT = 600.0
#: the address space a child may add to what it has when it starts (BC_HARNESS_WORKER_MEMORY, in
#: bytes, overrides it): past it an allocation fails as an error of that result, instead of the
#: machine running out of memory (vetting bounds what a golden's tensors need far below this; code
#: a golden runs can ask for more)
WORKER_MEMORY = 8 << 30


class Crashed(Exception):
    """The child died, or was stopped as hung, during a request."""

    def __init__(self, at, cause: str):
        super().__init__(f"{cause}" + (f" while on {at!r}" if at is not None else ""))
        self.at = at  # the key the child was on (None: between keys, or before the first)
        self.cause = cause  # "SIGSEGV (signal 11)", "exit status 3", "no answer within 600 s (hung): stopped"


class ChildError(RuntimeError):
    """The request raised a Python exception in the child: a bug on our side, with its traceback."""


def cause_of(exitcode: int | None) -> str:
    """A child's end as a person reads it: the signal by name, or the exit status."""
    if exitcode is None:
        return "ended without an exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "signal"
        return f"{name} (signal {-exitcode})"
    return f"exit status {exitcode}"


def _context():
    """The fork server where the platform has one (Linux, macOS), else spawn (a torch import per child)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


class Sandbox:
    """One child at a time, started on the first request and again after each crash.

    Not shared between threads: a pool of workers holds one Sandbox each.
    """

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self._process = None
        self._conn = None
        self._busy = False  # a request was sent and its end not read (its stream was left early)
        self.crashes = 0

    def stream(self, handler: str, payload: Any) -> Iterator[Any]:
        """Run ``handler`` ("module:function", called as ``function(payload, at)`` and yielding
        items) in the child; yield each item as it arrives. Raises Crashed, or ChildError."""
        if self._busy:  # the last request's stream was abandoned: its answers would come first
            self._stop()
        self._start()
        at = None
        try:
            _send(self._conn, (handler, payload))
        except (OSError, ValueError):  # the child is gone already
            raise self._crashed(at) from None
        self._busy = True
        while True:
            try:
                if self.timeout is not None and not self._conn.poll(self.timeout):
                    self._stop()
                    self.crashes += 1
                    raise Crashed(at, f"no answer within {self.timeout:g} s (hung): stopped")
                kind, value = _receive(self._conn)
            except (EOFError, OSError):
                raise self._crashed(at) from None
            if kind == "at":
                at = value
            elif kind == "item":
                at = None
                yield value
            elif kind == "end":
                self._busy = False
                return
            else:
                self._busy = False
                raise ChildError(value)

    def call(self, function: Callable, *args) -> Any:
        """``function(*args)`` in the child (both picklable); its value, or Crashed."""
        (value,) = self.stream("harness.sandbox:_call", (function, args))
        return value

    def close(self) -> None:
        """Let the child end (it exits when its pipe closes)."""
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._process = self._conn = None

    def _start(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self.close()
        context = _context()
        here, there = context.Pipe()
        process = context.Process(target=_serve, args=(there,), daemon=True, name="bc-harness-sandbox")
        process.start()
        there.close()
        self._process, self._conn = process, here

    def _crashed(self, at) -> Crashed:
        process = self._process
        if process is not None:
            process.join(timeout=10)
            if process.is_alive():  # the pipe broke but the child lives on: stop it
                process.kill()
                process.join()
        code = process.exitcode if process is not None else None
        self._process, self._conn, self._busy = None, None, False
        self.crashes += 1
        return Crashed(at, cause_of(code))

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
        self._busy = False


def run_to_end(box: Sandbox, handler: str, payload: dict, on_item: Callable[[Any], None],
               deaths_outside: int = 2) -> str | None:
    """Send a request until it ends, across crashes: the key a child died on goes into
    ``payload["crashed"]`` (key -> cause) and the request is sent again to a new child, whose
    handler gives that key its crash outcome and goes on (``on_item`` may record in ``payload``
    what need not be done again). A child that dies ``deaths_outside`` times between keys is
    given up, and so is a request whose handler raises a Python error: the cause is returned (None:
    the request ended)."""
    crashed = payload.setdefault("crashed", {})
    deaths = 0
    while True:
        try:
            for item in box.stream(handler, payload):
                on_item(item)
            return None
        except ChildError as exc:  # a Python error the handler did not foresee: said, not raised
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "an error"
            return f"a Python error in the worker ({last[:200]}), a harness bug to report"
        except Crashed as exc:
            if exc.at is not None:
                crashed[exc.at] = exc.cause
                continue
            deaths += 1
            if deaths >= deaths_outside:
                return f"it died {deaths} times outside any key ({exc.cause})"


_SHARED: dict[int, Sandbox] = {}
_SHARED_LOCK = threading.Lock()


def shared() -> Sandbox:
    """This process's one Sandbox for requests made one at a time (the pytest plugin's items)."""
    with _SHARED_LOCK:
        box = _SHARED.get(os.getpid())
        if box is None:
            box = _SHARED[os.getpid()] = Sandbox()
        return box


# --- the child ------------------------------------------------------------------------------------

def _send(conn, message) -> None:
    """Plain pickle both ways: multiprocessing's own pickler hands tensors over in shared memory,
    which loses a quantized tensor's quantizer (and leaks file descriptors)."""
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(conn):
    return pickle.loads(conn.recv_bytes())


def _serve(conn) -> None:
    """The child's loop: a request at a time, until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # Nothing the child runs may write into the parent's standard output, which may be a protocol
    # channel (an xdist worker talks to its controller over it): what would go there goes to stderr.
    sys.stdout.flush()
    os.dup2(2, 1)
    _limit_memory()
    while True:
        try:
            handler, payload = _receive(conn)
        except (EOFError, OSError):
            return
        module, _, name = handler.partition(":")
        try:
            function = getattr(importlib.import_module(module), name)
            for item in function(payload, lambda key: _send(conn, ("at", key))):
                _send(conn, ("item", item))
        except Exception:
            _send(conn, ("error", traceback.format_exc()))
            continue
        _send(conn, ("end", None))


def _limit_memory() -> None:
    """RLIMIT_AS at what the child holds now plus its budget (where the platform has one)."""
    try:
        import resource
    except ImportError:
        return
    budget = int(os.environ.get("BC_HARNESS_WORKER_MEMORY") or WORKER_MEMORY)
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            now = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = now + budget
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft == resource.RLIM_INFINITY or wanted < soft:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))


def _call(payload, at) -> Iterator[Any]:
    function, args = payload
    yield function(*args)
