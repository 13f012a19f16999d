"""The one thing pyproject.toml cannot declare: the reference kernels' C++ extension.

harness._kernels is compiled from kernels/*.cpp by the machine's compiler on install; it links
against nothing but Python (and the C library), so one build serves every torch version. Its
matrix multiply runs on the process's OpenMP threads when torch has loaded a runtime (found
among the loaded objects, never loaded by the extension), else on threads of its own.
-ffp-contract=off keeps the compiler from fusing a multiply and an add into one rounding (the
kernels state their rounding exactly).

The default build runs on any x86-64: it targets the baseline ISA, and the integer dot products
that dominate the time have AVX2 and AVX512-VNNI versions chosen at run time from what the CPU
reports, so an install cached or copied onto another CPU (a CI cache, a container image) still
runs. BC_HARNESS_NATIVE_KERNELS=1 adds -march=native: the rest of the loops vectorized for this
CPU only, and an illegal instruction on an older one (benchmarks/kernel_builds.py measures both).
"""

import os
import sys

from setuptools import Extension, setup

flags = ["-O3", "-std=c++17", "-ffp-contract=off"]
if os.environ.get("BC_HARNESS_NATIVE_KERNELS"):
    flags.append("-march=native")

setup(ext_modules=[Extension(
    "harness._kernels",
    sources=[f"kernels/{name}.cpp" for name in ("kernels", "gemm", "parallel", "conv", "rowwise")],
    depends=[f"kernels/{name}.h" for name in ("gemm", "parallel", "python")],
    extra_compile_args=flags,
    language="c++",
    # dlopen / dl_iterate_phdr: in the C library from glibc 2.34, in libdl before
    libraries=["dl"] if sys.platform.startswith("linux") else [],
)])
