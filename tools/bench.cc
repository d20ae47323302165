// The benchmark behind `kvc bench` (tools/bench.h). It uses only kvcodec's
// public C API, plus Highway for the int8 absmax baseline (same dispatch care
// as the codec: foreach_target + HWY_DYNAMIC_DISPATCH) and for selecting the
// HWY_SCALAR target (hwy::SetSupportedTargetsForTest).
//
// Throughputs are GB/s (1e9 bytes) of f16 input: encode reads the f16 cache,
// decode writes one. memcpy_gbps copies the same f16 buffer in the same run.
#include "tools/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <new>
#include <vector>

#include "codec/base/cache_size.h"  // header-only: the decoder's rule, for the baseline
#include "kvcodec/kvcodec.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tools/bench.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/cache_control.h>
#include <hwy/highway.h>

// Baseline: per token (row of dim f16 values) absmax int8, stored as dim
// int8 codes + one f32 scale; decode back to f16.
HWY_BEFORE_NAMESPACE();
namespace kvc::tools {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void Int8Encode(const hwy::float16_t* HWY_RESTRICT in, size_t rows, size_t dim,
                int8_t* HWY_RESTRICT codes, float* HWY_RESTRICT scales) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const size_t N = hn::Lanes(df);
  for (size_t r = 0; r < rows; ++r) {
    const hwy::float16_t* x = in + r * dim;
    auto vmax = hn::Zero(df);
    for (size_t j = 0; j < dim; j += N) {
      vmax = hn::Max(vmax, hn::Abs(hn::PromoteTo(df, hn::LoadU(dh, x + j))));
    }
    const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    scales[r] = amax / 127.0f;
    const auto inv = hn::Set(df, amax > 0 ? 127.0f / amax : 0.0f);
    for (size_t j = 0; j < dim; j += N) {
      const auto v = hn::Mul(hn::PromoteTo(df, hn::LoadU(dh, x + j)), inv);
      hn::StoreU(hn::DemoteTo(d8, hn::NearestInt(v)), d8, codes + r * dim + j);
    }
    (void)di;
  }
}

// around_cache: non-temporal stores, by the rule kvcodec's decoder follows for an
// output of more than half the last-level cache (out must then be aligned
// to 16 bytes, and dim a multiple of the lanes, which are 16 bytes or more).
void Int8Decode(const int8_t* HWY_RESTRICT codes, const float* HWY_RESTRICT scales,
                size_t rows, size_t dim, bool around_cache, hwy::float16_t* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const size_t N = hn::Lanes(df);
  const bool stream = around_cache && N * 2 >= 16 &&
                      reinterpret_cast<uintptr_t>(out) % (N * 2) == 0 && dim % N == 0;
  for (size_t r = 0; r < rows; ++r) {
    const auto s = hn::Set(df, scales[r]);
    for (size_t j = 0; j < dim; j += N) {
      const auto q = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, codes + r * dim + j)));
      const auto h = hn::DemoteTo(dh, hn::Mul(q, s));
      if (stream) {
        hn::Stream(h, dh, out + r * dim + j);
      } else {
        hn::StoreU(h, dh, out + r * dim + j);
      }
    }
  }
  if (stream) hwy::FlushStream();
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace kvc::tools
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvc::tools {

HWY_EXPORT(Int8Encode);
HWY_EXPORT(Int8Decode);

namespace {

using Clock = std::chrono::steady_clock;

// Cache-line aligned storage, as an engine's tensors are (malloc aligns
// large blocks to 16 bytes only), so that vectors of any width can stream.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}  // NOLINT(runtime/explicit)
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const CacheLineAllocator&) const { return true; }
  bool operator!=(const CacheLineAllocator&) const { return false; }
};
using HalfBuffer = std::vector<uint16_t, CacheLineAllocator<uint16_t>>;

struct Options {
  std::vector<std::string> presets;
  uint32_t dim = 128, heads = 8, tokens = 0, threads = 1, reps = 5;
  // Threads share out blocks: the default cuts the cache into blocks of
  // 4096 tokens, as an engine storing pages would, so that they can.
  uint32_t block_tokens = 4096;
  bool json = false, scalar = true;
  std::string target;  // empty: the best supported target
};

template <class F>
double MedianSeconds(uint32_t reps, F&& f) {
  std::vector<double> t;
  for (uint32_t r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// f16 values with per-channel scales (a few outlier channels), like a cache.
void FillCache(HalfBuffer* v, uint32_t dim, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < v->size(); ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    // Sum of 4 uniforms: roughly Gaussian, unit variance.
    double g = 0;
    for (int k = 0; k < 4; ++k) g += static_cast<double>((s >> (16 * k)) & 0xFFFF) / 65536.0;
    g = (g - 2.0) * 1.7320508;
    const double scale = (i % dim) % 17 == 3 ? 6.0 : 1.0;
    const float f = static_cast<float>(g * scale);
    // f32 -> f16 by truncation is fine for synthetic input.
    uint32_t b;
    std::memcpy(&b, &f, 4);
    const uint32_t sign = (b >> 16) & 0x8000, e = (b >> 23) & 0xFF;
    uint16_t h = static_cast<uint16_t>(sign);
    if (e >= 113) h = static_cast<uint16_t>(sign | ((e - 112) << 10) | ((b >> 13) & 0x3FF));
    (*v)[i] = h;
  }
}

kvc_tensor Tensor(void* data, const kvc_cache_desc& d) {
  kvc_tensor t = {};
  t.data = data;
  t.dtype = KVC_DTYPE_F16;
  t.ndim = 4;
  t.shape[0] = d.num_layers;
  t.shape[1] = d.num_kv_heads;
  t.shape[2] = d.num_tokens;
  t.shape[3] = d.head_dim;
  return t;
}

struct Result {
  double encode_gbps = 0, decode_gbps = 0;
  size_t stream_bytes = 0;
  bool ok = false;
  std::string error;
};

Result Measure(const kvc_config* config, const kvc_cache_desc& desc, const Options& o,
               HalfBuffer& keys, HalfBuffer& values, HalfBuffer& out_keys, HalfBuffer& out_values,
               std::vector<uint8_t>& stream, uint32_t reps) {
  Result r;
  kvc_encode_options eo;
  kvc_encode_options_init(&eo);
  eo.threads = o.threads;
  eo.block_tokens = o.block_tokens;
  kvc_decode_options dopt;
  kvc_decode_options_init(&dopt);
  dopt.threads = o.threads;
  const kvc_tensor k = Tensor(keys.data(), desc), v = Tensor(values.data(), desc);
  const kvc_tensor ok = Tensor(out_keys.data(), desc), ov = Tensor(out_values.data(), desc);
  const double bytes = 2.0 * keys.size() * 2;  // K and V, f16
  size_t size = 0;
  kvc_status status = KVC_OK;
  kvc_diagnostics diag;
  const double enc = MedianSeconds(reps, [&] {
    status = kvc_encode_stream(config, &desc, &k, &v, &eo, stream.data(), stream.size(), &size,
                               &diag);
  });
  if (status != KVC_OK) {
    r.error = std::string("encode: ") + diag.message;
    return r;
  }
  const double dec = MedianSeconds(reps, [&] {
    status = kvc_decode_stream(stream.data(), size, &dopt, &ok, &ov, &diag);
  });
  if (status != KVC_OK) {
    r.error = std::string("decode: ") + diag.message;
    return r;
  }
  r.encode_gbps = bytes / enc / 1e9;
  r.decode_gbps = bytes / dec / 1e9;
  r.stream_bytes = size;
  r.ok = true;
  return r;
}

int Usage() {
  std::fprintf(stderr,
               "usage: kvc bench (--preset NAME ... | --all) [--dim D] [--heads H] "
               "[--tokens N] [--block-tokens B] [--threads T] [--reps R] [--target NAME] [--no-scalar] "
               "[--json]\n");
  return 2;
}

}  // namespace

int RunBench(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](uint32_t* out) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      const unsigned long v = std::strtoul(argv[++i], &end, 10);
      if (*end != '\0' || v == 0 || v > 0xFFFFFFFFul) return false;
      *out = static_cast<uint32_t>(v);
      return true;
    };
    if (a == "--preset" && i + 1 < argc) {
      o.presets.push_back(argv[++i]);
    } else if (a == "--all") {
      for (uint32_t p = 0; p < kvc_preset_count(); ++p) o.presets.push_back(kvc_preset_name(p));
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--target" && i + 1 < argc) {
      o.target = argv[++i];
    } else if (a == "--no-scalar") {
      o.scalar = false;
    } else if ((a == "--dim" && value(&o.dim)) || (a == "--tokens" && value(&o.tokens)) ||
               (a == "--heads" && value(&o.heads)) ||
               (a == "--threads" && value(&o.threads)) || (a == "--reps" && value(&o.reps)) ||
               (a == "--block-tokens" && value(&o.block_tokens))) {
    } else {
      return Usage();
    }
  }
  if (o.presets.empty()) return Usage();
  // --target NAME measures that compiled target instead of the best one.
  hwy::SetSupportedTargetsForTest(0);
  const std::vector<int64_t> all_targets = hwy::SupportedAndGeneratedTargets();
  int64_t forced = 0;
  for (int64_t t : all_targets) {
    if (o.target == hwy::TargetName(t)) forced = t;
  }
  if (!o.target.empty() && forced == 0) {
    std::fprintf(stderr, "bench: target %s is not compiled in or not supported\n",
                 o.target.c_str());
    return 2;
  }
  hwy::SetSupportedTargetsForTest(forced);
  if (o.tokens == 0) {  // K + V of one layer >= 256 MiB of f16: beyond the LLC
    const uint64_t per_token = 2ull * o.heads * o.dim * 2;
    o.tokens = static_cast<uint32_t>(((256ull << 20) + per_token - 1) / per_token);
  }
  kvc_cache_desc desc;
  kvc_cache_desc_init(&desc);
  desc.num_layers = 1;
  desc.num_kv_heads = o.heads;
  desc.head_dim = o.dim;
  desc.num_tokens = o.tokens;
  desc.dtype = KVC_DTYPE_F16;
  desc.rope_layout = KVC_ROPE_SPLIT_HALF;
  desc.rope_base = 10000.0f;
  const size_t n = size_t{o.heads} * o.tokens * o.dim;
  HalfBuffer keys(n), values(n), out_keys(n), out_values(n);
  FillCache(&keys, o.dim, 1);
  FillCache(&values, o.dim, 2);
  const double bytes = 2.0 * n * 2;

  // memcpy of the same f16 input (K then V) into the decode buffers.
  const double mem = MedianSeconds(o.reps, [&] {
    std::memcpy(out_keys.data(), keys.data(), n * 2);
    std::memcpy(out_values.data(), values.data(), n * 2);
  });
  const double memcpy_gbps = bytes / mem / 1e9;

  // Baseline int8 absmax, same buffers, one thread.
  const size_t rows = n / o.dim;
  std::vector<int8_t> codes(2 * n);
  std::vector<float> scales(2 * rows);
  const auto* hk = reinterpret_cast<const hwy::float16_t*>(keys.data());
  const auto* hv = reinterpret_cast<const hwy::float16_t*>(values.data());
  const double base_enc = MedianSeconds(o.reps, [&] {
    HWY_DYNAMIC_DISPATCH(Int8Encode)(hk, rows, o.dim, codes.data(), scales.data());
    HWY_DYNAMIC_DISPATCH(Int8Encode)(hv, rows, o.dim, codes.data() + n, scales.data() + rows);
  });
  const bool around_cache = WriteAroundCache(static_cast<uint64_t>(bytes));
  const double base_dec = MedianSeconds(o.reps, [&] {
    HWY_DYNAMIC_DISPATCH(Int8Decode)(codes.data(), scales.data(), rows, o.dim, around_cache,
                                     reinterpret_cast<hwy::float16_t*>(out_keys.data()));
    HWY_DYNAMIC_DISPATCH(Int8Decode)(codes.data() + n, scales.data() + rows, rows, o.dim,
                                     around_cache,
                                     reinterpret_cast<hwy::float16_t*>(out_values.data()));
  });

  int exit_code = 0;
  const std::string target = kvc_simd_target();
  if (!o.json) {
    std::printf("%-16s %-7s %8s %8s %8s %7s %7s %8s %8s %8s %8s\n", "preset", "target",
                "enc GB/s", "dec GB/s", "memcpy", "enc/mc", "dec/mc", "base enc", "base dec",
                "scal enc", "scal dec");
  }
  for (const std::string& preset : o.presets) {
    kvc_config* config = nullptr;
    kvc_diagnostics diag;
    if (kvc_config_from_preset(preset.c_str(), &config, &diag) != KVC_OK) {
      std::fprintf(stderr, "bench: %s\n", diag.message);
      exit_code = 1;
      continue;
    }
    kvc_encode_options eo;
    kvc_encode_options_init(&eo);
    eo.threads = o.threads;
    eo.block_tokens = o.block_tokens;
    std::vector<uint8_t> stream(kvc_stream_bound(config, &desc, &eo));
    Result simd = Measure(config, desc, o, keys, values, out_keys, out_values, stream, o.reps);
    Result scalar;
    if (simd.ok && o.scalar) {
      // The lowest compiled target: HWY_SCALAR (GCC) / EMU128 (clang).
      hwy::SetSupportedTargetsForTest(all_targets.back());
      scalar = Measure(config, desc, o, keys, values, out_keys, out_values, stream,
                       std::max<uint32_t>(1, std::min<uint32_t>(o.reps, 3)));
      hwy::SetSupportedTargetsForTest(forced);
    }
    kvc_config_destroy(config);
    if (!simd.ok) {
      std::fprintf(stderr, "bench: %s: %s\n", preset.c_str(), simd.error.c_str());
      exit_code = 1;
      continue;
    }
    const double be = bytes / base_enc / 1e9, bd = bytes / base_dec / 1e9;
    if (o.json) {
      std::printf(
          "{\"preset\":\"%s\",\"target\":\"%s\",\"head_dim\":%u,\"heads\":%u,\"tokens\":%u,"
          "\"threads\":%u,\"input_bytes\":%.0f,\"stream_bytes\":%zu,\"encode_gbps\":%.4f,"
          "\"decode_gbps\":%.4f,\"memcpy_gbps\":%.4f,\"encode_vs_memcpy\":%.4f,"
          "\"decode_vs_memcpy\":%.4f,\"baseline_encode_gbps\":%.4f,"
          "\"baseline_decode_gbps\":%.4f,\"scalar_encode_gbps\":%.4f,"
          "\"scalar_decode_gbps\":%.4f}\n",
          preset.c_str(), target.c_str(), o.dim, o.heads, o.tokens, o.threads, bytes,
          simd.stream_bytes, simd.encode_gbps, simd.decode_gbps, memcpy_gbps,
          simd.encode_gbps / memcpy_gbps, simd.decode_gbps / memcpy_gbps, be, bd,
          scalar.encode_gbps, scalar.decode_gbps);
    } else {
      std::printf("%-16s %-7s %8.3f %8.3f %8.3f %7.3f %7.3f %8.3f %8.3f %8.3f %8.3f\n",
                  preset.c_str(), target.c_str(), simd.encode_gbps, simd.decode_gbps,
                  memcpy_gbps, simd.encode_gbps / memcpy_gbps, simd.decode_gbps / memcpy_gbps,
                  be, bd, scalar.encode_gbps, scalar.decode_gbps);
    }
    std::fflush(stdout);
  }
  hwy::SetSupportedTargetsForTest(0);
  return exit_code;
}

}  // namespace kvc::tools
#endif  // HWY_ONCE
