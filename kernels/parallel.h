// How the reference kernels run on several threads: column ranges split over the threads of the
// process's OpenMP runtime where one is already loaded (torch's), else over std::threads.
#pragma once

#include <cstddef>

#include "gemm.h"

namespace bc {

// work(n0, n1) over [0, N) in `threads` parts whose bounds are multiples of `step`; the calling
// thread does one part. Where the process already has an OpenMP runtime loaded (torch's libgomp,
// or an Intel or LLVM runtime, which answer to the same GOMP entry points), the parts run on that
// runtime's threads: torch's own workers, which spin on their cores for a while after each of
// torch's parallel regions and would otherwise compete with threads of ours. The runtime is found
// among the objects already loaded (Linux) and never loaded here.
void parallel_columns(std::ptrdiff_t N, std::ptrdiff_t step, unsigned threads, const Columns& work);

}  // namespace bc
