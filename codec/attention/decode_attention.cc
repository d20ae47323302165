#include "attention/decode_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/parallel.h"
#include "simd/softmax_kernels.h"

namespace kvc {
namespace {

// For each KV head of [head_begin, head_end), its blocks in token order,
// which together hold tokens [token_begin, token_end) exactly once.
struct Coverage {
  uint32_t head_begin = 0, head_end = 0;
  uint32_t token_begin = 0, token_end = 0;
  std::vector<std::vector<const EncodedBlock*>> heads;
};

Status Cover(const std::vector<EncodedBlock>& blocks, const char* what, Coverage* c) {
  c->head_begin = std::numeric_limits<uint32_t>::max();
  c->head_end = 0;
  for (const EncodedBlock& b : blocks) {
    c->head_begin = std::min(c->head_begin, b.header.head_start);
    c->head_end = std::max(c->head_end, b.header.head_start + b.header.head_count);
  }
  c->heads.assign(c->head_end - c->head_begin, {});
  for (const EncodedBlock& b : blocks) {
    for (uint32_t i = 0; i < b.header.head_count; ++i) {
      c->heads[b.header.head_start + i - c->head_begin].push_back(&b);
    }
  }
  for (uint32_t h = 0; h < c->heads.size(); ++h) {
    std::vector<const EncodedBlock*>& list = c->heads[h];
    const uint32_t head = c->head_begin + h;
    if (list.empty()) {
      return Status(KVC_ERR_INVALID_ARGUMENT,
                    StrFormat("%s blocks hold heads %u..%u but not head %u", what,
                              c->head_begin, c->head_end - 1, head));
    }
    std::stable_sort(list.begin(), list.end(), [](const EncodedBlock* a, const EncodedBlock* b) {
      return a->header.token_start < b->header.token_start;
    });
    uint32_t end = list[0]->header.token_start;
    for (const EncodedBlock* b : list) {
      if (b->header.token_start < end) {
        return Status(KVC_ERR_INVALID_ARGUMENT,
                      StrFormat("%s blocks hold token %u of head %u twice", what,
                                b->header.token_start, head));
      }
      if (b->header.token_start > end) {
        return Status(KVC_ERR_INVALID_ARGUMENT,
                      StrFormat("%s blocks leave tokens %u..%u of head %u out", what, end,
                                b->header.token_start - 1, head));
      }
      end = b->header.token_start + b->header.token_count;
    }
    const uint32_t begin = list[0]->header.token_start;
    if (h == 0) {
      c->token_begin = begin;
      c->token_end = end;
    } else if (begin != c->token_begin || end != c->token_end) {
      return Status(KVC_ERR_INVALID_ARGUMENT,
                    StrFormat("%s blocks hold tokens %u..%u of head %u but %u..%u of head %u",
                              what, begin, end - 1, head, c->token_begin, c->token_end - 1,
                              c->head_begin));
    }
  }
  return OkStatus();
}

Status CheckBlocks(const std::vector<EncodedBlock>& blocks, const char* what, kvc_kind kind,
                   const BlockHeader& first) {
  if (blocks.empty()) {
    return Status(KVC_ERR_INVALID_ARGUMENT, StrFormat("no %s blocks", what));
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    const BlockHeader& h = blocks[i].header;
    if (h.kind != static_cast<uint32_t>(kind)) {
      return Status(KVC_ERR_INVALID_ARGUMENT,
                    StrFormat("%s block %zu holds %s", what, i,
                              h.kind == KVC_KIND_KEYS ? "keys" : "values"));
    }
    if (h.layer != first.layer || h.head_dim != first.head_dim) {
      return Status(KVC_ERR_INVALID_ARGUMENT,
                    StrFormat("%s block %zu is layer %u, head_dim %u; key block 0 is layer "
                              "%u, head_dim %u",
                              what, i, h.layer, h.head_dim, first.layer, first.head_dim));
    }
  }
  return OkStatus();
}

// Calls fn(block, head in block, t0, count, skip) for the pieces of one
// head's blocks that hold tokens [c0, c1): t0 (relative to the block) is
// rounded down to a multiple of 8, as the codecs need, and `skip` tokens
// before the wanted ones come with it.
template <class Fn>
Status ForEachPiece(const std::vector<const EncodedBlock*>& list, uint32_t head, uint32_t c0,
                    uint32_t c1, const Fn& fn) {
  for (const EncodedBlock* b : list) {
    const uint32_t start = b->header.token_start;
    const uint32_t end = start + b->header.token_count;
    if (end <= c0 || start >= c1) continue;
    const uint32_t rel = std::max(c0, start) - start;
    const uint32_t t0 = rel & ~7u;
    const uint32_t count = std::min(c1, end) - start - t0;
    KVC_RETURN_IF_ERROR(fn(*b, head - b->header.head_start, t0, count, rel - t0));
  }
  return OkStatus();
}

}  // namespace

Status DecodeAttention(const std::vector<EncodedBlock>& keys,
                       const std::vector<EncodedBlock>& values, const float* queries,
                       uint32_t num_query_heads, const AttentionParams& params, float* out,
                       float* lse) {
  if (keys.empty()) return Status(KVC_ERR_INVALID_ARGUMENT, "no key blocks");
  const BlockHeader& first = keys[0].header;
  KVC_RETURN_IF_ERROR(CheckBlocks(keys, "key", KVC_KIND_KEYS, first));
  KVC_RETURN_IF_ERROR(CheckBlocks(values, "value", KVC_KIND_VALUES, first));
  Coverage kc, vc;
  KVC_RETURN_IF_ERROR(Cover(keys, "key", &kc));
  KVC_RETURN_IF_ERROR(Cover(values, "value", &vc));
  if (kc.head_begin != vc.head_begin || kc.head_end != vc.head_end ||
      kc.token_begin != vc.token_begin || kc.token_end != vc.token_end) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("key blocks hold heads %u..%u, tokens %u..%u; value blocks heads "
                            "%u..%u, tokens %u..%u",
                            kc.head_begin, kc.head_end - 1, kc.token_begin, kc.token_end - 1,
                            vc.head_begin, vc.head_end - 1, vc.token_begin, vc.token_end - 1));
  }
  const uint32_t kv_heads = kc.head_end - kc.head_begin;
  if (num_query_heads == 0 || num_query_heads % kv_heads != 0) {
    return Status(KVC_ERR_SHAPE_MISMATCH,
                  StrFormat("%u query heads for %u KV heads (need a multiple)",
                            num_query_heads, kv_heads));
  }
  const uint32_t group = num_query_heads / kv_heads;
  const size_t d = first.head_dim;

  const uint32_t lo = std::max(kc.token_begin, params.token_begin);
  const uint32_t hi =
      params.token_end == 0 ? kc.token_end : std::min(kc.token_end, params.token_end);
  if (lo >= hi) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  StrFormat("no token attended: the blocks hold tokens %u..%u, the range "
                            "asked for is %u..%u",
                            kc.token_begin, kc.token_end - 1, params.token_begin,
                            params.token_end == 0 ? kc.token_end : params.token_end));
  }
  float scale = params.scale;
  if (scale == 0.0f) scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  if (!std::isfinite(scale)) {
    return Status(KVC_ERR_INVALID_ARGUMENT, "scale is not finite");
  }
  for (size_t i = 0; i < size_t{num_query_heads} * d; ++i) {
    if (!std::isfinite(queries[i])) {
      return Status(KVC_ERR_INVALID_VALUE,
                    StrFormat("query head %zu, element %zu is not finite", i / d, i % d));
    }
  }

  // Job (head, chunk): the chunk's logits, its own maximum m, the sum l of
  // exp(logit - m) and the weighted values o relative to m, per query head of
  // the group; merged below in chunk order.
  const uint32_t chunks = static_cast<uint32_t>(
      (uint64_t{hi} - lo + kAttentionChunkTokens - 1) / kAttentionChunkTokens);
  const size_t jobs = size_t{kv_heads} * chunks;
  std::vector<float> maxima(jobs * group), sums(jobs * group), partial(jobs * group * d);
  Status status = ParallelFor(jobs, params.parallelism, [&](size_t job) -> Status {
    const uint32_t h = static_cast<uint32_t>(job / chunks);
    const uint32_t c0 = lo + static_cast<uint32_t>(job % chunks) * kAttentionChunkTokens;
    const uint32_t c1 = static_cast<uint32_t>(
        std::min<uint64_t>(hi, uint64_t{c0} + kAttentionChunkTokens));
    const uint32_t n = c1 - c0;
    const uint32_t head = kc.head_begin + h;
    const float* q = queries + size_t{h} * group * d;
    std::vector<float> logits(size_t{group} * n);
    std::vector<float> piece(size_t{group} * (kAttentionChunkTokens + 8));
    KVC_RETURN_IF_ERROR(ForEachPiece(
        kc.heads[h], head, c0, c1,
        [&](const EncodedBlock& b, uint32_t bh, uint32_t t0, uint32_t count,
            uint32_t skip) -> Status {
          KVC_RETURN_IF_ERROR(ScoreHeadRange(*b.codec, b.header, b.payload, *b.layout, bh, t0,
                                             count, q, group, piece.data()));
          const uint32_t at = b.header.token_start + t0 + skip - c0;
          for (uint32_t g = 0; g < group; ++g) {
            std::copy(piece.begin() + size_t{g} * count + skip,
                      piece.begin() + size_t{g} * count + count,
                      logits.begin() + size_t{g} * n + at);
          }
          return OkStatus();
        }));
    float* m = &maxima[job * group];
    float* l = &sums[job * group];
    for (uint32_t g = 0; g < group; ++g) {
      float* row = &logits[size_t{g} * n];
      simd::Scale(row, n, scale);
      m[g] = simd::MaxValue(row, n);
      // Finite scores times a finite scale can still overflow.
      if (!std::isfinite(m[g])) {
        return Status(KVC_ERR_INVALID_VALUE,
                      StrFormat("query head %u: a logit (scale %g times q.k) overflows f32 "
                                "(tokens %u..%u)",
                                h * group + g, static_cast<double>(scale), c0, c1 - 1));
      }
      l[g] = simd::ExpShiftedSum(row, n, m[g]);
    }
    float* o = &partial[job * group * d];
    std::fill(o, o + size_t{group} * d, 0.0f);
    std::vector<float> sum(size_t{group} * d);
    return ForEachPiece(
        vc.heads[h], head, c0, c1,
        [&](const EncodedBlock& b, uint32_t bh, uint32_t t0, uint32_t count,
            uint32_t skip) -> Status {
          const uint32_t at = b.header.token_start + t0 + skip - c0;
          for (uint32_t g = 0; g < group; ++g) {
            float* w = &piece[size_t{g} * count];
            std::fill(w, w + skip, 0.0f);
            std::copy(logits.begin() + size_t{g} * n + at,
                      logits.begin() + size_t{g} * n + at + (count - skip), w + skip);
          }
          KVC_RETURN_IF_ERROR(AttendHeadRange(*b.codec, b.header, b.payload, *b.layout, bh, t0,
                                              count, piece.data(), group, sum.data()));
          for (size_t i = 0; i < sum.size(); ++i) o[i] += sum[i];
          return OkStatus();
        });
  });
  KVC_RETURN_IF_ERROR(status);

  for (uint32_t h = 0; h < kv_heads; ++h) {
    for (uint32_t g = 0; g < group; ++g) {
      const size_t j = size_t{h} * group + g;  // query head
      float top = -std::numeric_limits<float>::infinity();
      for (uint32_t c = 0; c < chunks; ++c) {
        top = std::max(top, maxima[(size_t{h} * chunks + c) * group + g]);
      }
      double total = 0.0;
      std::vector<double> acc(d, 0.0);
      for (uint32_t c = 0; c < chunks; ++c) {
        const size_t at = (size_t{h} * chunks + c) * group + g;
        const double f = std::exp(static_cast<double>(maxima[at]) - top);
        total += f * sums[at];
        const float* o = &partial[at * d];
        for (size_t i = 0; i < d; ++i) acc[i] += f * o[i];
      }
      for (size_t i = 0; i < d; ++i) out[j * d + i] = static_cast<float>(acc[i] / total);
      if (lse) lse[j] = static_cast<float>(top + std::log(total));
    }
  }
  return OkStatus();
}

}  // namespace kvc
