"""The reference kernels' default build runs on any x86-64 and every version of its dot products is exact.

The default build targets the baseline ISA and picks its AVX2 or AVX512-VNNI dot products at run
time. Here that is shown, not assumed: the installed extension runs under an emulated CPU with no
AVX at all (qemu's qemu64) and one with AVX2 but no AVX512 (Haswell), and gives the same bits as
on this machine, on every path; a -march=native build gives those bits here too, and dies with an
illegal instruction on the emulated baseline CPU, which is what the default build avoids.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import _kernels

BATTERY = Path(__file__).with_name("kernels_battery.py")
#: the interpreter itself, not a venv's symlink or a shim: qemu runs a binary
PYTHON = os.path.realpath(sys.executable)


@settings(max_examples=150, deadline=None)
@given(m=st.integers(1, 9), k=st.integers(1, 300), n=st.integers(1, 13), a_zp=st.integers(0, 255),
       seed=st.integers(0, 2**31 - 1))
def test_every_dot_product_version_is_exact(m, k, n, a_zp, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (m, k), dtype=torch.uint8, generator=g)
    b = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=g)
    b_zp = torch.randint(-5, 6, (n,), dtype=torch.int32, generator=g)
    want = ((a.long() - a_zp) @ (b.long() - b_zp.long()[:, None]).T).int()
    before = _kernels.isa()
    try:
        for isa in _kernels.available_isas():
            _kernels.use_isa(isa)
            out = torch.empty(m, n, dtype=torch.int32)
            _kernels.matmul_u8s8(_buffer(a), _buffer(b), _buffer(out), m, k, n, a_zp, _buffer(b_zp), False)
            assert torch.equal(out, want), isa
    finally:
        _kernels.use_isa(before)


def _buffer(t):
    """The memory of a contiguous tensor as a buffer (the caller keeps ``t`` alive)."""
    import ctypes

    return (ctypes.c_char * (t.numel() * t.element_size())).from_address(t.contiguous().data_ptr())


def test_a_version_the_cpu_lacks_is_refused_not_run():
    with pytest.raises(ValueError, match="not one this CPU runs"):
        _kernels.use_isa("sse9")
    assert _kernels.isa() in _kernels.available_isas() and _kernels.available_isas()[0] == "portable"


def _battery(*prefix, so):
    proc = subprocess.run([*prefix, PYTHON, str(BATTERY), str(so)], capture_output=True, text=True, timeout=300)
    return proc, dict(line.split() for line in proc.stdout.splitlines())


def _qemu():
    found = shutil.which("qemu-x86_64")
    if found is None:
        pytest.skip("no qemu-x86_64 (.ci/run installs Debian's qemu-user)")
    return found


def test_installed_build_runs_on_a_baseline_x86_64_and_gives_the_same_bits(tmp_path):
    here, digests = _battery(so=_kernels.__file__)
    assert here.returncode == 0, here.stderr
    assert len(set(digests.values())) == 1, digests  # every path on this CPU agrees
    (expected,) = set(digests.values())
    qemu = _qemu()
    for cpu, paths in (("qemu64", {"portable"}), ("Haswell", {"portable", "avx2"})):
        run, found = _battery(qemu, "-cpu", cpu, so=_kernels.__file__)
        assert run.returncode == 0, f"{cpu}: exit {run.returncode}\n{run.stderr[-2000:]}"
        assert set(found) == paths and set(found.values()) == {expected}, (cpu, found)


def test_a_native_build_is_exact_here_but_not_portable(tmp_path):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    so = tmp_path / "_kernels_native.so"
    subprocess.run([compiler, "-O3", "-std=c++17", "-ffp-contract=off", "-march=native", "-shared", "-fPIC",
                    f"-I{sysconfig.get_paths()['include']}",
                    *map(str, sorted((Path(__file__).parents[1] / "kernels").glob("*.cpp"))),
                    "-o", str(so)], check=True, capture_output=True)
    _, installed = _battery(so=_kernels.__file__)
    run, native = _battery(so=so)
    assert run.returncode == 0 and native == installed
    if "avx" in Path("/proc/cpuinfo").read_text().split():
        # -march=native on an AVX machine encodes even scalar float code as AVX: a baseline CPU cannot run it
        crashed, _ = _battery(_qemu(), "-cpu", "qemu64", so=so)
        assert crashed.returncode in (-signal.SIGILL, 128 + signal.SIGILL), crashed.returncode
