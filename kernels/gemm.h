// The u8 x s8 matrix multiply of the reference kernels (gemm.cpp), and which version of its
// dot products runs (portable, AVX2, AVX512-VNNI: chosen from the CPU, or asked for).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace bc {

enum Isa { ISA_PORTABLE = 0, ISA_AVX2 = 1, ISA_AVX512VNNI = 2 };

// the best version this CPU runs; the one in use; its name; the names of those this CPU runs
Isa best_isa();
Isa current_isa();
const char* isa_name(Isa isa);
// use the version named `name` from now on; false when it is unknown or the CPU lacks it
bool select_isa(const char* name);

// out[m, n] = sum_k (a[m, k] - a_zp) * (b[n, k] - b_zp[n]) in int32, a [M, K] uint8 and b [N, K]
// int8, both row-major. With saturate_pairs, the raw products a[m, k] * b[n, k] are first summed
// in adjacent pairs (k, k + 1 for even k) saturated to int16, as AVX2's vpmaddubsw does (fbgemm
// without AVX512-VNNI); zero points are applied after through row and column sums, as fbgemm
// does. Exact for K < 2^15. Splits the columns over `threads` threads (0: one per CPU), those of
// the process's OpenMP runtime (torch's) where one is loaded. `then(n0, n1)`, if given, runs in the
// thread that computed columns [n0, n1) as soon as they are done (while they are in its cache).
using Columns = std::function<void(std::ptrdiff_t, std::ptrdiff_t)>;
void gemm_u8s8(const uint8_t* a, const int8_t* b, const int32_t* b_zp, int32_t* out, std::ptrdiff_t M,
               std::ptrdiff_t K, std::ptrdiff_t N, int a_zp, bool saturate_pairs, unsigned threads = 0,
               const Columns* then = nullptr);

}  // namespace bc
