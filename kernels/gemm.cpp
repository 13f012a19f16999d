// The u8 x s8 matrix multiply of the reference kernels: raw sums of a * b per output, then the
// zero points through row and column sums (acc = raw - a_zp * colsum(b) - b_zp * rowsum(a) +
// K * a_zp * b_zp), the order fbgemm applies them in.
//
// The raw sums come from one of three versions of the dot products, all giving the same integers:
// - portable C++, any CPU;
// - AVX2: exact sums from int16 operands (vpmaddwd adds two int16 products into int32 without
//   saturating), and the saturating rule from vpmaddubsw, fbgemm's own instruction;
// - AVX512-VNNI: exact sums from vpdpbusd (four u8 x s8 products into int32, no saturation).
// The vector versions are compiled for their ISA by function attributes (not by -march) and
// chosen at run time, so one build runs on any x86-64.
//
// Blocking: B is packed a block at a time (16 columns for AVX2, 32 for AVX512, by 512 of k), each
// 32-bit lane holding the consecutive k one instruction multiplies (4 bytes, or 2 int16); A's
// rows are broadcast a lane at a time. A block of B stays in L1 while every tile of rows (4 for
// AVX2, 8 for AVX512) passes over it, the tile's sums in registers.
#include "gemm.h"
#include "parallel.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BC_X86 1
#define BC_TARGET(isa) __attribute__((target(isa)))
#endif

namespace bc {
namespace {

using idx = std::ptrdiff_t;

inline int32_t sat16(int32_t v) { return std::min(std::max(v, -32768), 32767); }

// --- portable --------------------------------------------------------------------------------

void raw_portable(const uint8_t* A, const int8_t* B, int32_t* C, idx M, idx K, idx N, idx n0, idx n1, bool saturate) {
  for (idx m = 0; m < M; ++m) {
    const uint8_t* a = A + m * K;
    for (idx n = n0; n < n1; ++n) {
      const int8_t* b = B + n * K;
      int32_t s = 0;
      if (!saturate) {
        for (idx k = 0; k < K; ++k) s += static_cast<int32_t>(a[k]) * b[k];
      } else {
        idx k = 0;
        for (; k + 1 < K; k += 2) s += sat16(a[k] * b[k] + a[k + 1] * b[k + 1]);
        if (k < K) s += a[k] * b[k];
      }
      C[m * N + n] = s;
    }
  }
}

// --- packing ---------------------------------------------------------------------------------

// Both vector versions multiply one 32-bit lane of A (4 bytes of k, or 2 int16) with the lane of
// each of W columns of B. `Lanes` is a matrix whose rows are made of such lanes: B's rows (k
// padded to whole lanes, widened to int16 for vpmaddwd) or A's.
struct Lanes {
  const uint8_t* data;
  idx stride;  // bytes from one row to the next
  int32_t at(idx row, idx lane) const {
    int32_t v;
    std::memcpy(&v, data + row * stride + lane * 4, 4);
    return v;
  }
};

// A [rows, K] as rows of whole lanes: bytes zero-padded to a multiple of 4, or int16 (k padded
// to a multiple of 2). Unchanged bytes are not copied.
struct LaneRows {
  std::vector<uint8_t> bytes;
  std::vector<int16_t> wide;
  Lanes lanes{};
  template <typename T>
  LaneRows(const T* src, idx rows, idx K, bool widen) {
    if (widen) {
      const idx width = (K + 1) / 2 * 2;
      wide.assign(static_cast<size_t>(rows * width), 0);
      for (idx r = 0; r < rows; ++r)
        for (idx k = 0; k < K; ++k) wide[r * width + k] = static_cast<int16_t>(src[r * K + k]);
      lanes = {reinterpret_cast<const uint8_t*>(wide.data()), width * 2};
    } else if (K % 4 == 0) {
      lanes = {reinterpret_cast<const uint8_t*>(src), K};
    } else {
      const idx width = (K + 3) / 4 * 4;
      bytes.assign(static_cast<size_t>(rows * width), 0);
      for (idx r = 0; r < rows; ++r) std::memcpy(&bytes[r * width], src + r * K, static_cast<size_t>(K));
      lanes = {bytes.data(), width};
    }
  }
};

#ifdef BC_X86
// 8 lanes of 8 rows of B (`stride` bytes apart) to [lane][8 columns] rows `ld` lanes apart: an
// 8 x 8 transpose of 32-bit values in registers.
BC_TARGET("avx2")
void transpose8(const uint8_t* src, idx stride, int32_t* dst, idx ld) {
  __m256i r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i * stride));
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i * ld), _mm256_permute2x128_si256(r[i], r[i + 4], 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (i + 4) * ld), _mm256_permute2x128_si256(r[i], r[i + 4], 0x31));
  }
}
#endif

// Lanes [g0, g0 + groups) of B's columns [n, n + cols) as [lane][W columns]; columns past `cols` zero.
void pack_block(const Lanes& b, idx n, idx cols, int W, idx g0, idx groups, int32_t* dst) {
  idx g = 0;
#ifdef BC_X86
  if (cols == W) {  // whole blocks of 8 lanes by 8 columns in registers (every vector version has AVX2)
    for (; g + 8 <= groups; g += 8)
      for (idx c = 0; c < W; c += 8) transpose8(b.data + (n + c) * b.stride + (g0 + g) * 4, b.stride, dst + g * W + c, W);
  }
#endif
  for (; g < groups; ++g) {
    int32_t* row = dst + g * W;
    idx c = 0;
    for (; c < cols; ++c) row[c] = b.at(n + c, g0 + g);
    for (; c < W; ++c) row[c] = 0;
  }
}

// A's rows in tiles of R, tile-major: tile t holds, for each lane g, the lanes of its R rows side
// by side ([tile][lane][R]; rows past M zero), so a tile reads one contiguous stream.
std::vector<int32_t> pack_rows(const Lanes& a, idx M, idx lanes, int R) {
  const idx tiles = (M + R - 1) / R;
  std::vector<int32_t> out(static_cast<size_t>(tiles * lanes * R), 0);
  for (idx m = 0; m < M; ++m) {
    int32_t* dst = out.data() + (m / R) * lanes * R + m % R;
    for (idx g = 0; g < lanes; ++g) dst[g * R] = a.at(m, g);
  }
  return out;
}

#ifdef BC_X86
// --- AVX2: 16 columns (two vectors of 8 int32) by up to 4 rows --------------------------------

// A tile's raw sums over `groups` lanes into out[R][16]. Bytes: vpmaddubsw's int16 pair sums
// (saturating), then vpmaddwd by ones into int32. int16: vpmaddwd adds two products into int32.
template <int R>
BC_TARGET("avx2")
void avx2_tile(const int32_t* ap, const int32_t* bp, idx groups, int32_t* out, bool bytes) {
  __m256i acc[R][2];
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (idx g = 0; g < groups; ++g) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + g * 16));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + g * 16 + 8));
    for (int i = 0; i < R; ++i) {
      const __m256i av = _mm256_set1_epi32(ap[g * 4 + i]);
      if (bytes) {
        acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
        acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
      } else {
        acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(av, b0));
        acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(av, b1));
      }
    }
  }
  for (int i = 0; i < R; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * 16), acc[i][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * 16 + 8), acc[i][1]);
  }
}

template <int R>
BC_TARGET("avx2")
void avx2_bytes(const int32_t* ap, const int32_t* bp, idx groups, int32_t* out) {
  avx2_tile<R>(ap, bp, groups, out, true);
}

template <int R>
BC_TARGET("avx2")
void avx2_wide(const int32_t* ap, const int32_t* bp, idx groups, int32_t* out) {
  avx2_tile<R>(ap, bp, groups, out, false);
}

// --- AVX512-VNNI: 32 columns (two vectors of 16 int32) by up to 8 rows ----------------------

template <int R>
BC_TARGET("avx512f,avx512bw,avx512vnni")
void vnni_tile(const int32_t* ap, const int32_t* bp, idx groups, int32_t* out) {
  __m512i acc[R][2];
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
  for (idx g = 0; g < groups; ++g) {
    const __m512i b0 = _mm512_loadu_si512(bp + g * 32);
    const __m512i b1 = _mm512_loadu_si512(bp + g * 32 + 16);
    for (int i = 0; i < R; ++i) {
      const __m512i av = _mm512_set1_epi32(ap[g * 8 + i]);
      acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], av, b0);
      acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], av, b1);
    }
  }
  for (int i = 0; i < R; ++i) {
    _mm512_storeu_si512(out + i * 32, acc[i][0]);
    _mm512_storeu_si512(out + i * 32 + 16, acc[i][1]);
  }
}
#endif

// One version's shape: W columns per packed block, up to R rows per tile, G k per lane (4 bytes
// or 2 int16), and its tiles by row count (tile[r - 1] takes r rows).
// A tile: rows packed by pack_rows (R lanes per group), B's block by pack_block, sums into out[R][W].
using Tile = void (*)(const int32_t*, const int32_t*, idx, int32_t*);

struct Version {
  int W, R, G;
  Tile tile[8];
};

#ifdef BC_X86
const Version AVX2_BYTES{16, 4, 4, {avx2_bytes<1>, avx2_bytes<2>, avx2_bytes<3>, avx2_bytes<4>}};
const Version AVX2_WIDE{16, 4, 2, {avx2_wide<1>, avx2_wide<2>, avx2_wide<3>, avx2_wide<4>}};
const Version VNNI{32, 8, 4, {vnni_tile<1>, vnni_tile<2>, vnni_tile<3>, vnni_tile<4>, vnni_tile<5>, vnni_tile<6>,
                              vnni_tile<7>, vnni_tile<8>}};
#endif

//: k per block of B: a packed block (at most 32 columns x 512 bytes, or 16 x 512 int16) stays in L1
constexpr idx KC = 512;

// Raw sums of columns [n0, n1) by `v`, A's rows packed by pack_rows: for each block of W columns
// and KC of k, B packed once, then every tile of rows over it; a tile's sums land in C, or are
// added to it after the first KC.
void raw_blocked(const Version& v, const int32_t* a_tiles, const Lanes& b, int32_t* C, idx M, idx K, idx N, idx n0,
                 idx n1) {
  const idx lanes_per_block = KC / v.G, lanes = (K + v.G - 1) / v.G;
  std::vector<int32_t> packed(static_cast<size_t>(lanes_per_block * v.W));
  std::vector<int32_t> out(static_cast<size_t>(v.R * v.W));
  for (idx n = n0; n < n1; n += v.W) {
    const idx cols = std::min<idx>(v.W, n1 - n);
    for (idx g0 = 0; g0 < lanes; g0 += lanes_per_block) {
      const idx groups = std::min(lanes_per_block, lanes - g0);
      pack_block(b, n, cols, v.W, g0, groups, packed.data());
      for (idx m = 0; m < M; m += v.R) {
        const idx rows = std::min<idx>(v.R, M - m);
        v.tile[rows - 1](a_tiles + (m / v.R * lanes + g0) * v.R, packed.data(), groups, out.data());
        for (idx i = 0; i < rows; ++i) {
          int32_t* c = C + (m + i) * N + n;
          const int32_t* o = out.data() + i * v.W;
          if (g0 == 0) std::memcpy(c, o, sizeof(int32_t) * static_cast<size_t>(cols));
          else for (idx j = 0; j < cols; ++j) c[j] += o[j];
        }
      }
    }
  }
}

// The version that computes `saturate`'s sums for A on this CPU (nullptr: the portable loops).
// Exact sums on AVX2 take int16 operands, unless every a is below 128: then no pair of u8 x s8
// products leaves int16 (2 x 127 x 128 = 32512), and vpmaddubsw's sums are exact too.
const Version* version_for(Isa isa, bool saturate, const uint8_t* A, idx count) {
#ifdef BC_X86
  if (isa == ISA_AVX512VNNI && !saturate) return &VNNI;
  if (isa == ISA_PORTABLE) return nullptr;
  if (saturate) return &AVX2_BYTES;
  uint8_t high = 0;
  for (idx i = 0; i < count; ++i) high |= A[i];
  return high < 128 ? &AVX2_BYTES : &AVX2_WIDE;
#else
  (void)isa, (void)saturate, (void)A, (void)count;
  return nullptr;
#endif
}

// Sums of `count` bytes, unsigned or signed: portable loops, and AVX2 ones for the vector versions.
template <typename T>
int32_t byte_sum(const T* p, idx count) {
  int32_t s = 0;
  for (idx i = 0; i < count; ++i) s += p[i];
  return s;
}

#ifdef BC_X86
BC_TARGET("avx2")
int32_t byte_sum_avx2(const uint8_t* p, idx count) {  // u8: vpsadbw against zero
  __m256i acc = _mm256_setzero_si256();
  idx i = 0;
  for (; i + 32 <= count; i += 32)
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)),
                                                 _mm256_setzero_si256()));
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  return static_cast<int32_t>(lanes[0] + lanes[1] + lanes[2] + lanes[3]) + byte_sum(p + i, count - i);
}

BC_TARGET("avx2")
int32_t byte_sum_avx2(const int8_t* p, idx count) {  // s8: 1 x b in pairs (|sum| <= 256), then into int32
  __m256i acc = _mm256_setzero_si256();
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  idx i = 0;
  for (; i + 32 <= count; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16));
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  int32_t s = 0;
  for (int32_t v : lanes) s += v;
  return s + byte_sum(p + i, count - i);
}
#endif

template <typename T>
int32_t row_sum(const T* p, idx count, bool vector) {
#ifdef BC_X86
  if (vector) return byte_sum_avx2(p, count);
#endif
  (void)vector;
  return byte_sum(p, count);
}

// Zero points for columns [n0, n1): acc = raw - a_zp * colsum(b) - b_zp * rowsum(a) + K * a_zp * b_zp.
// The true value fits int32 (K < 2^15), so wrapping unsigned arithmetic gives it exactly.
void apply_zero_points(const int8_t* B, const int32_t* bz, const std::vector<int32_t>& row_sums, int32_t* C, idx M,
                       idx K, idx N, int a_zp, idx n0, idx n1, bool vector) {
  std::vector<uint32_t> correction(static_cast<size_t>(n1 - n0));
  for (idx n = n0; n < n1; ++n) {
    const int32_t col_sum = row_sum(B + n * K, K, vector);
    correction[n - n0] = static_cast<uint32_t>(-a_zp * col_sum) + static_cast<uint32_t>(K * a_zp) * static_cast<uint32_t>(bz[n]);
  }
  for (idx m = 0; m < M; ++m) {
    auto* c = reinterpret_cast<uint32_t*>(C + m * N);
    const auto row_sum = static_cast<uint32_t>(row_sums[m]);
    for (idx n = n0; n < n1; ++n)
      c[n] = c[n] + correction[n - n0] - static_cast<uint32_t>(bz[n]) * row_sum;
  }
}

Isa& isa_in_use() {
  static Isa isa = best_isa();
  return isa;
}

}  // namespace

Isa best_isa() {
#ifdef BC_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) return ISA_AVX512VNNI;
  if (__builtin_cpu_supports("avx2")) return ISA_AVX2;
#endif
  return ISA_PORTABLE;
}

Isa current_isa() { return isa_in_use(); }

const char* isa_name(Isa isa) {
  static const char* const names[] = {"portable", "avx2", "avx512vnni"};
  return names[isa];
}

bool select_isa(const char* name) {
  for (int i = 0; i <= best_isa(); ++i) {
    if (std::strcmp(name, isa_name(static_cast<Isa>(i))) == 0) {
      isa_in_use() = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

void gemm_u8s8(const uint8_t* A, const int8_t* B, const int32_t* bz, int32_t* C, idx M, idx K, idx N, int a_zp,
               bool saturate, unsigned threads, const Columns* then) {
  if (threads == 0) threads = std::max(1u, std::min(std::thread::hardware_concurrency(), 16u));
  if (static_cast<double>(M) * K * N < (1 << 20)) threads = 1;  // not worth a thread
  const Version* v = version_for(isa_in_use(), saturate, A, M * K);
  std::unique_ptr<LaneRows> b_lanes;
  std::vector<int32_t> a_tiles;
  if (v != nullptr) {
    a_tiles = pack_rows(LaneRows(A, M, K, v->G == 2).lanes, M, (K + v->G - 1) / v->G, v->R);
    b_lanes = std::make_unique<LaneRows>(B, N, K, v->G == 2);
  }
  std::vector<int32_t> row_sums(static_cast<size_t>(M), 0);
  for (idx m = 0; m < M; ++m) row_sums[m] = row_sum(A + m * K, K, v != nullptr);
  const Columns work = [&](idx n0, idx n1) {
    if (v != nullptr) raw_blocked(*v, a_tiles.data(), b_lanes->lanes, C, M, K, N, n0, n1);
    else raw_portable(A, B, C, M, K, N, n0, n1, saturate);
    apply_zero_points(B, bz, row_sums, C, M, K, N, a_zp, n0, n1, v != nullptr);
    if (then != nullptr) (*then)(n0, n1);
  };
  parallel_columns(N, v != nullptr ? v->W : 4, threads, work);
}

}  // namespace bc
