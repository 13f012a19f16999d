// Threads for the reference kernels (parallel.h).
#include "parallel.h"

#if defined(__linux__)
#include <dlfcn.h>
#include <link.h>
#define BC_FIND_OPENMP 1
#endif

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

namespace bc {
namespace {

using idx = std::ptrdiff_t;

// The GOMP entry points of a loaded OpenMP runtime.
struct OpenMP {
  void (*parallel)(void (*)(void*), void*, unsigned, unsigned) = nullptr;
  int (*thread_num)() = nullptr;
  int (*num_threads)() = nullptr;
};

#ifdef BC_FIND_OPENMP
int find_openmp(dl_phdr_info* info, size_t, void* found) {
  const char* path = info->dlpi_name;
  if (path == nullptr || *path == 0) return 0;
  const char* base = std::strrchr(path, '/');
  base = base ? base + 1 : path;
  if (std::strncmp(base, "libgomp", 7) != 0 && std::strncmp(base, "libiomp", 7) != 0 &&
      std::strncmp(base, "libomp", 6) != 0)
    return 0;
  void* handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);  // already loaded: a handle, nothing loaded
  if (handle == nullptr) return 0;
  OpenMP omp;
  omp.parallel = reinterpret_cast<decltype(omp.parallel)>(dlsym(handle, "GOMP_parallel"));
  omp.thread_num = reinterpret_cast<decltype(omp.thread_num)>(dlsym(handle, "omp_get_thread_num"));
  omp.num_threads = reinterpret_cast<decltype(omp.num_threads)>(dlsym(handle, "omp_get_num_threads"));
  dlclose(handle);  // drops only the reference taken above: the runtime stays loaded by its owner
  if (omp.parallel == nullptr || omp.thread_num == nullptr || omp.num_threads == nullptr) return 0;
  *static_cast<OpenMP*>(found) = omp;
  return 1;
}

#endif

// The loaded OpenMP runtime (Linux: found among the loaded objects), else nullptr.
const OpenMP* loaded_openmp() {
#ifdef BC_FIND_OPENMP
  static OpenMP cached;
  if (cached.parallel == nullptr) dl_iterate_phdr(find_openmp, &cached);
  return cached.parallel != nullptr ? &cached : nullptr;
#else
  return nullptr;
#endif
}

struct Split {
  const Columns* work;
  idx N, step;
  const OpenMP* omp;
  void run(idx part, idx parts) const {
    idx chunk = (N + parts - 1) / parts;
    chunk = (chunk + step - 1) / step * step;
    const idx n0 = std::min(N, part * chunk), n1 = std::min(N, n0 + chunk);
    if (n0 < n1) (*work)(n0, n1);
  }
};

void run_openmp_part(void* split) {
  const auto* s = static_cast<const Split*>(split);
  s->run(s->omp->thread_num(), s->omp->num_threads());
}

}  // namespace

void parallel_columns(idx N, idx step, unsigned threads, const Columns& work) {
  if (threads <= 1) return work(0, N);
  Split split{&work, N, step, loaded_openmp()};
  if (split.omp != nullptr) return split.omp->parallel(run_openmp_part, &split, threads, 0);
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back([&split, t, threads] { split.run(t, threads); });
  split.run(0, threads);
  for (auto& t : pool) t.join();
}

}  // namespace bc
