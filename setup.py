"""The one thing pyproject.toml cannot declare: the reference kernels' C++ extension.

harness._kernels is compiled from kernels/kernels.cpp by the machine's compiler on install; it
links against nothing but Python, so one build serves every torch version. -ffp-contract=off
keeps the compiler from fusing a multiply and an add into one rounding (the kernels state
their rounding exactly); -march=native lets it vectorize the integer dot products for this CPU
(set BC_HARNESS_PORTABLE_KERNELS=1 to build for any x86-64 instead).
"""

import os

from setuptools import Extension, setup

flags = ["-O3", "-std=c++17", "-ffp-contract=off"]
if not os.environ.get("BC_HARNESS_PORTABLE_KERNELS"):
    flags.append("-march=native")

setup(ext_modules=[Extension("harness._kernels", sources=["kernels/kernels.cpp"], extra_compile_args=flags,
                             language="c++")])
