// Block-GTQ (methods.md §5): RoPE-aware bit allocation. RoPE rotates each 2-D
// block (dimension i with i + d/2, or 2i with 2i + 1) of a key by a
// position-dependent angle, so a block's share of the logit is set by its
// energy. Per head, the encoder scores each block by its mean energy over the
// block's keys (and the queries' when given), hands out bits greedily by the
// marginal gain s * 4^-b, groups the blocks of equal width and quantizes each
// group with its own TurboQuant-MSE instance (with a rotation from 3 bits up,
// as the paper). The allocation is the head record, 4 bits per block.
//
// Budget: a vector costs at most what tq-mse-b<bits> costs, d * bits index
// bits and one norm, norms of every group and its share of the head record
// included: the allocator tries every group count G and keeps the best
// allocation that fits 2 * sum(b_i) + G * norm_bits + shared <= d * bits +
// norm_bits, shared = ceil((8 * record bytes + 16) / tokens).
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "base/prng.h"
#include "config/tensor_config.h"
#include "quant/mse_quantizer.h"
#include "quant/tensor_codec.h"
#include "quant/vector_math.h"
#include "simd/bitpack.h"
#include "simd/convert_kernels.h"
#include "simd/reduce_kernels.h"

namespace kvc {
namespace {

constexpr int kMaxBlockBits = 8;

class BlockGtqCodec final : public TensorCodec {
 public:
  BlockGtqCodec(const kvc_tensor_config& c, uint32_t d)
      : TensorCodec(d), config_(c), blocks_(d / 2),
        norm_bits_(static_cast<uint32_t>(8 * DtypeBytes(c.scalar_format))) {}

  size_t head_record_size() const override { return blocks_ / 2; }
  // Key energy per block, query energy per block, key count, query count.
  size_t head_stats_size() const override { return 2 * blocks_ + 2; }

  void ObserveHead(const float* x, size_t count, double* stats) const override {
    Accumulate(x, count, stats);
    stats[2 * blocks_] += static_cast<double>(count);
  }
  void ObserveQueries(const float* q, size_t count, double* stats) const override {
    Accumulate(q, count, stats + blocks_);
    stats[2 * blocks_ + 1] += static_cast<double>(count);
  }

  void FinishHead(const double* stats, uint8_t* record) const override {
    // s_i = mean key energy, averaged with the mean query energy if known.
    std::vector<double> score(blocks_);
    const double keys = stats[2 * blocks_], queries = stats[2 * blocks_ + 1];
    for (size_t i = 0; i < blocks_; ++i) {
      score[i] = stats[i] / keys;
      if (queries > 0) score[i] = (score[i] + stats[blocks_ + i] / queries) / 2;
    }
    // The head's record and the rounding of its two sections to bytes are
    // paid for by its vectors too, so that a block never costs more than
    // tq-mse-b<bits> would.
    const int64_t shared_bits = static_cast<int64_t>(
        std::ceil((8.0 * head_record_size() + 16.0) / std::max(keys, 1.0)));
    std::vector<uint32_t> best;
    double best_cost = 0;
    for (uint32_t groups = 1; groups <= kMaxBlockBits; ++groups) {
      const int64_t budget_bits = int64_t{head_dim()} * config_.bits + norm_bits_ -
                                  int64_t{groups} * norm_bits_ - shared_bits;
      if (budget_bits < static_cast<int64_t>(2 * config_.min_bits * blocks_)) break;
      const std::vector<uint32_t> bits = Allocate(score, static_cast<uint32_t>(budget_bits / 2));
      if (CountGroups(bits) > groups) continue;
      double cost = 0;
      for (size_t i = 0; i < blocks_; ++i) cost += std::ldexp(score[i], -2 * int(bits[i]));
      if (best.empty() || cost < best_cost) {
        best = bits;
        best_cost = cost;
      }
    }
    // Blocks too short to share a record's cost, or heads too narrow for
    // any uneven allocation to fit: every block at the average, which is
    // tq-mse-b<bits>'s budget exactly.
    if (best.empty()) best.assign(blocks_, config_.bits);
    std::fill(record, record + blocks_ / 2, 0);
    for (size_t i = 0; i < blocks_; ++i) {
      record[i / 2] |= static_cast<uint8_t>(best[i] << (4 * (i % 2)));
    }
  }

  Status CheckHeadRecord(const uint8_t* record) const override {
    const std::vector<uint32_t> bits = Bits(record);
    uint64_t total = 0;
    for (uint32_t b : bits) {
      if (b > kMaxBlockBits || b < config_.min_bits) {
        return Status(KVC_ERR_CORRUPT, StrFormat("block width %u out of range", b));
      }
      total += 2 * b;
    }
    if (total + CountGroups(bits) * uint64_t{norm_bits_} >
        uint64_t{head_dim()} * config_.bits + norm_bits_) {
      return Status(KVC_ERR_CORRUPT, "bit allocation exceeds the budget");
    }
    return OkStatus();
  }

  // Bits: the group norms, then every group's indices in one bit stream
  // that runs on from vector to vector without padding.
  std::vector<size_t> SectionWidths(const uint8_t* record) const override {
    const std::vector<uint32_t> bits = Bits(record);
    size_t index_bits = 0;
    for (uint32_t b : bits) index_bits += 2 * b;
    return {CountGroups(bits) * 8 * DtypeBytes(config_.scalar_format), index_bits};
  }

  size_t MaxBitsPerVector() const override {
    return size_t{head_dim()} * config_.bits + norm_bits_;
  }

  // Every group's channels of every vector gathered and quantized a batch
  // at a time (norms in place, indices in a scratch buffer), then the index
  // bit stream of the chunk assembled. The error reported is the
  // reference's, which checks vector by vector, groups in order.
  Status Encode(const uint8_t* record, const float* x, size_t count,
                uint8_t* const* sections, size_t* bad_vector) const override {
    const std::shared_ptr<const Groups> cached = GroupsOf(record);
    const Groups& groups = *cached;
    const size_t norm_bytes = SectionWidths(record)[0] / 8;
    const size_t d = head_dim();
    std::vector<std::vector<uint8_t>> indices(groups.quantizers.size());
    std::vector<float> part;
    Status first = OkStatus();
    size_t first_bad = count;
    for (size_t g = 0, norm_offset = 0; g < groups.quantizers.size(); ++g) {
      const MseQuantizer& q = *groups.quantizers[g];
      const std::vector<int32_t>& dims = groups.dims[g];
      part.resize(count * dims.size());
      simd::GatherColumns(x, d, count, dims.data(), dims.size(), part.data());
      indices[g].assign(count * q.index_bytes() + 8, 0);  // + room for word reads
      size_t bad = 0;
      const Status status = q.EncodeRows(part.data(), count, sections[0] + norm_offset,
                                         norm_bytes, indices[g].data(), &bad);
      if (!status.ok() && bad < first_bad) {
        first = status;
        first_bad = bad;
      }
      norm_offset += q.norm_bytes();
    }
    if (!first.ok()) {
      *bad_vector = first_bad;
      return first;
    }
    // Vector n's groups follow each other in one bit stream, without
    // padding; the chunk starts on a byte boundary (block.cc) and is
    // written in place.
    const size_t vector_bits = SectionWidths(record)[1];
    simd::BitStringWriter writer(sections[1], sections[1] + (count * vector_bits + 7) / 8);
    for (size_t n = 0; n < count; ++n) {
      for (size_t g = 0; g < groups.quantizers.size(); ++g) {
        const size_t bits = groups.dims[g].size() * static_cast<size_t>(groups.bits[g]);
        writer.Append(indices[g].data() + n * groups.quantizers[g]->index_bytes(), bits);
      }
    }
    return OkStatus();
  }

  Status Decode(const uint8_t* record, const uint8_t* const* sections, size_t count,
                float* out, size_t* bad_vector) const override {
    const std::shared_ptr<const Groups> cached = GroupsOf(record);
    const Groups& groups = *cached;
    const size_t norm_bytes = SectionWidths(record)[0] / 8;
    const size_t vector_bits = SectionWidths(record)[1];
    const size_t d = head_dim();
    // The chunk's bit stream, and every group's records split out of it.
    std::vector<uint8_t> stream((count * vector_bits + 7) / 8 + 8, 0);
    std::copy(sections[1], sections[1] + stream.size() - 8, stream.begin());
    std::vector<std::vector<uint8_t>> indices(groups.quantizers.size());
    for (size_t g = 0; g < groups.quantizers.size(); ++g) {
      indices[g].assign(count * groups.quantizers[g]->index_bytes(), 0);
    }
    size_t bit = 0;
    for (size_t n = 0; n < count; ++n) {
      for (size_t g = 0; g < groups.quantizers.size(); ++g) {
        const size_t bits = groups.dims[g].size() * static_cast<size_t>(groups.bits[g]);
        const size_t bytes = groups.quantizers[g]->index_bytes();
        simd::ExtractBits(stream.data(), bit, bits, indices[g].data() + n * bytes);
        bit += bits;
      }
    }
    // Every group's decoded rows in one buffer, group after group, and a 0
    // after them for the channels of blocks given no bits. (A chunk is at
    // most 64 vectors, block.cc, so its indices fit in int32.)
    std::vector<size_t> offsets(groups.quantizers.size());
    size_t total = 0;
    for (size_t g = 0; g < groups.quantizers.size(); ++g) {
      offsets[g] = total;
      total += count * groups.dims[g].size();
    }
    std::unique_ptr<float[]> parts(new float[total + 1]);
    parts[total] = 0.0f;
    Status first = OkStatus();
    size_t first_bad = count;
    for (size_t g = 0, norm_offset = 0; g < groups.quantizers.size(); ++g) {
      const MseQuantizer& q = *groups.quantizers[g];
      size_t bad = 0;
      const Status status = q.DecodeRows(sections[0] + norm_offset, norm_bytes,
                                         indices[g].data(), count, &parts[offsets[g]], &bad);
      norm_offset += q.norm_bytes();
      if (!status.ok() && bad < first_bad) {
        first = status;
        first_bad = bad;
      }
    }
    if (first.ok()) {
      // Channel j of vector n is entry a of its group's row n (gathered,
      // not scattered: the stores stay in order).
      std::vector<int32_t> columns(d, static_cast<int32_t>(total)), strides(d, 0);
      for (size_t g = 0; g < groups.quantizers.size(); ++g) {
        const std::vector<int32_t>& dims = groups.dims[g];
        for (size_t a = 0; a < dims.size(); ++a) {
          columns[dims[a]] = static_cast<int32_t>(offsets[g] + a);
          strides[dims[a]] = static_cast<int32_t>(dims.size());
        }
      }
      simd::GatherStridedColumns(parts.get(), count, columns.data(), strides.data(), d, out);
    }
    if (!first.ok()) *bad_vector = first_bad;
    return first;
  }

  // Each group in its own rotated domain: the queries' channels of every
  // group gathered and rotated once, then tile by tile each group's indices
  // dotted with them where they lie in the bit stream (a token per lane);
  // a token's score is the sum over its groups.
  Status Scores(const uint8_t* record, const uint8_t* const* sections, size_t count,
                const float* queries, size_t num_queries, float* scores,
                size_t* bad_vector) const override {
    const std::shared_ptr<const Groups> cached = GroupsOf(record);
    const Groups& groups = *cached;
    const std::vector<std::vector<float>> parts = RotatedParts(groups, queries, num_queries);
    std::fill(scores, scores + num_queries * count, 0.0f);
    return ForEachTile(groups, record, sections, count, bad_vector,
                       [&](size_t g, const MseQuantizer& q, const uint8_t* norms,
                           size_t norm_stride, const TileFields& fields, size_t n0, size_t m,
                           size_t* bad) {
      return q.AddRotatedFieldDots(norms, norm_stride, fields.stream, fields.first_bit,
                                   fields.record_bits, m, parts[g].data(), num_queries,
                                   scores + n0, count, bad);
    });
  }

  // Each group summed in its rotated domain over every tile, rotated back
  // once per query and its channels put in place; channels of blocks given
  // no bits are 0.
  Status Attend(const uint8_t* record, const uint8_t* const* sections, size_t count,
                const float* weights, size_t num_queries, float* out,
                size_t* bad_vector) const override {
    const std::shared_ptr<const Groups> cached = GroupsOf(record);
    const Groups& groups = *cached;
    const size_t d = head_dim();
    std::vector<std::vector<float>> sums(groups.quantizers.size());
    for (size_t g = 0; g < sums.size(); ++g) sums[g].assign(num_queries * groups.dims[g].size(), 0);
    std::vector<float> part;
    std::vector<uint8_t> indices;
    KVC_RETURN_IF_ERROR(ForEachTile(
        groups, record, sections, count, bad_vector,
        [&](size_t g, const MseQuantizer& q, const uint8_t* norms, size_t norm_stride,
            const TileFields& fields, size_t n0, size_t m, size_t* bad) {
          // The group's indices split out of the bit stream into whole bytes.
          const size_t bits = groups.dims[g].size() * static_cast<size_t>(groups.bits[g]);
          indices.resize(m * q.index_bytes());
          for (size_t i = 0; i < m; ++i) {
            simd::ExtractBits(fields.stream, fields.first_bit + i * fields.record_bits, bits,
                              indices.data() + i * q.index_bytes());
          }
          part.resize(sums[g].size());
          KVC_RETURN_IF_ERROR(q.RotatedSums(norms, norm_stride, indices.data(), m, weights + n0,
                                            count, num_queries, part.data(), bad));
          for (size_t i = 0; i < part.size(); ++i) sums[g][i] += part[i];
          return OkStatus();
        }));
    std::fill(out, out + num_queries * d, 0.0f);
    for (size_t g = 0; g < sums.size(); ++g) {
      const std::vector<int32_t>& dims = groups.dims[g];
      for (size_t k = 0; k < num_queries; ++k) {
        float* sum = &sums[g][k * dims.size()];
        groups.quantizers[g]->rotation().Inverse(sum);
        for (size_t a = 0; a < dims.size(); ++a) out[k * d + dims[a]] = sum[a];
      }
    }
    return OkStatus();
  }

 private:
  struct Groups {
    std::vector<int> bits;                      // per group
    std::vector<std::vector<int32_t>> dims;     // per group, ascending channels
    std::vector<const MseQuantizer*> quantizers;  // from quantizers_
  };

  // The two dimensions of RoPE block i.
  std::pair<uint32_t, uint32_t> BlockDims(size_t i) const {
    if (config_.rope_pairing == KVC_ROPE_INTERLEAVED) {
      return {static_cast<uint32_t>(2 * i), static_cast<uint32_t>(2 * i + 1)};
    }
    return {static_cast<uint32_t>(i), static_cast<uint32_t>(i + blocks_)};
  }

  // energy[i] += a^2 + b^2 in double for block i's channels (a, b), vector
  // after vector (a SIMD kernel).
  void Accumulate(const float* x, size_t count, double* energy) const {
    simd::AccumulatePairEnergies(x, head_dim(), count,
                                 config_.rope_pairing == KVC_ROPE_INTERLEAVED, energy);
  }

  // Greedy: every block starts at min_bits; each further bit goes to the
  // block of largest s_i * 4^-b_i (ties: the lowest block).
  std::vector<uint32_t> Allocate(const std::vector<double>& score, uint32_t total) const {
    std::vector<uint32_t> bits(blocks_, config_.min_bits);
    // gains[i] = s_i * 4^-b_i, updated for the block that gets the bit.
    std::vector<double> gains(blocks_);
    for (size_t i = 0; i < blocks_; ++i) gains[i] = std::ldexp(score[i], -2 * int(bits[i]));
    for (uint32_t spent = config_.min_bits * static_cast<uint32_t>(blocks_); spent < total;
         ++spent) {
      size_t pick = blocks_;
      double gain = -1;
      for (size_t i = 0; i < blocks_; ++i) {
        if (bits[i] < kMaxBlockBits && gains[i] > gain) {
          gain = gains[i];
          pick = i;
        }
      }
      if (pick == blocks_) break;
      ++bits[pick];
      gains[pick] = std::ldexp(score[pick], -2 * int(bits[pick]));
    }
    return bits;
  }

  static size_t CountGroups(const std::vector<uint32_t>& bits) {
    bool used[kMaxBlockBits + 1] = {};
    for (uint32_t b : bits) used[b] = true;
    size_t groups = 0;
    for (int b = 1; b <= kMaxBlockBits; ++b) groups += used[b];
    return groups;
  }

  std::vector<uint32_t> Bits(const uint8_t* record) const {
    std::vector<uint32_t> bits(blocks_);
    for (size_t i = 0; i < blocks_; ++i) bits[i] = (record[i / 2] >> (4 * (i % 2))) & 0xF;
    return bits;
  }

  // The groups of a record, made once: records repeat from chunk to chunk
  // (and often from block to block). A bounded cache shared by the threads;
  // a caller's pointer keeps its entry alive when the cache is cleared.
  std::shared_ptr<const Groups> GroupsOf(const uint8_t* record) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<uint8_t> key(record, record + head_record_size());
    auto it = groups_.find(key);
    if (it != groups_.end()) return it->second;
    if (groups_.size() >= kMaxCachedRecords) groups_.clear();
    auto groups = std::make_shared<const Groups>(MakeGroups(record));
    groups_.emplace(std::move(key), groups);
    return groups;
  }

  // Groups in ascending width; each one's seed is derived from the width.
  Groups MakeGroups(const uint8_t* record) const {
    const std::vector<uint32_t> bits = Bits(record);
    Groups groups;
    for (int width = 1; width <= kMaxBlockBits; ++width) {
      std::vector<int32_t> dims;
      for (size_t i = 0; i < blocks_; ++i) {
        if (bits[i] != static_cast<uint32_t>(width)) continue;
        const auto [a, b] = BlockDims(i);
        dims.push_back(static_cast<int32_t>(a));
        dims.push_back(static_cast<int32_t>(b));
      }
      if (dims.empty()) continue;
      std::sort(dims.begin(), dims.end());
      groups.bits.push_back(width);
      groups.quantizers.push_back(&Quantizer(width, static_cast<uint32_t>(dims.size())));
      groups.dims.push_back(std::move(dims));
    }
    return groups;
  }

  // Tokens per tile of Scores and Attend (their per-group index buffers).
  static constexpr size_t kTile = 256;

  // Every group's channels of every query, rotated by the group's quantizer.
  std::vector<std::vector<float>> RotatedParts(const Groups& groups, const float* queries,
                                               size_t num_queries) const {
    std::vector<std::vector<float>> parts(groups.quantizers.size());
    for (size_t g = 0; g < parts.size(); ++g) {
      const std::vector<int32_t>& dims = groups.dims[g];
      parts[g].resize(num_queries * dims.size());
      simd::GatherColumns(queries, head_dim(), num_queries, dims.data(), dims.size(),
                          parts[g].data());
      for (size_t k = 0; k < num_queries; ++k) {
        groups.quantizers[g]->rotation().Forward(&parts[g][k * dims.size()]);
      }
    }
    return parts;
  }

  // A group's records in a tile's bit stream: token i's indices start at
  // bit first_bit + i * record_bits of stream (readable 8 bytes past them).
  struct TileFields {
    const uint8_t* stream;
    size_t first_bit, record_bits;
  };

  // Tiles of tokens: each group's records of the tile handed to run(g,
  // quantizer, norms, norm stride, fields, first token, tokens, &bad). The
  // error reported is the reference's: the first vector, and at one vector
  // the first group.
  template <class Run>
  Status ForEachTile(const Groups& groups, const uint8_t* record,
                     const uint8_t* const* sections, size_t count, size_t* bad_vector,
                     Run&& run) const {
    const std::vector<size_t> widths = SectionWidths(record);
    const size_t norm_bytes = widths[0] / 8, vector_bits = widths[1];
    const size_t section_bytes = (count * vector_bits + 7) / 8;
    std::vector<uint8_t> copy;
    for (size_t n0 = 0; n0 < count; n0 += kTile) {
      const size_t m = std::min(kTile, count - n0);
      // The tile's bit stream with 8 bytes of room for the readers: the
      // section itself, or near its end a copy.
      const size_t first_bit = n0 * vector_bits, end_bit = (n0 + m) * vector_bits;
      const size_t first_byte = first_bit / 8, bytes = (end_bit + 7) / 8 - first_byte;
      const uint8_t* stream = sections[1] + first_byte;
      if (first_byte + bytes + 8 > section_bytes) {
        copy.assign(bytes + 8, 0);
        std::copy(stream, stream + bytes, copy.begin());
        stream = copy.data();
      }
      Status first = OkStatus();
      size_t first_bad = m;
      size_t group_bit = first_bit % 8;
      for (size_t g = 0, norm_offset = 0; g < groups.quantizers.size(); ++g) {
        const MseQuantizer& q = *groups.quantizers[g];
        size_t bad = 0;
        const Status status = run(g, q, sections[0] + n0 * norm_bytes + norm_offset, norm_bytes,
                                  TileFields{stream, group_bit, vector_bits}, n0, m, &bad);
        norm_offset += q.norm_bytes();
        group_bit += groups.dims[g].size() * static_cast<size_t>(groups.bits[g]);
        if (!status.ok() && bad < first_bad) {
          first = status;
          first_bad = bad;
        }
      }
      if (!first.ok()) {
        *bad_vector = n0 + first_bad;
        return first;
      }
    }
    return OkStatus();
  }

  // The TurboQuant-MSE instance of a group: its width and size decide it.
  // Made once per codec and shared by the threads (called with mutex_ held).
  const MseQuantizer& Quantizer(int width, uint32_t size) const {
    std::unique_ptr<MseQuantizer>& q = quantizers_[{width, size}];
    if (q == nullptr) {
      const uint32_t rotation =
          width >= 3 ? config_.rotation : static_cast<uint32_t>(KVC_ROTATION_NONE);
      q = std::make_unique<MseQuantizer>(
          size, width, rotation, DeriveSeed(config_.seed, static_cast<uint64_t>(width)),
          (config_.flags & KVC_CONFIG_NORM_CORRECTION) != 0, config_.scalar_format);
    }
    return *q;
  }

  kvc_tensor_config config_;
  size_t blocks_;
  uint32_t norm_bits_;
  static constexpr size_t kMaxCachedRecords = 256;
  mutable std::mutex mutex_;  // guards the caches below
  mutable std::map<std::pair<int, uint32_t>, std::unique_ptr<MseQuantizer>> quantizers_;
  mutable std::map<std::vector<uint8_t>, std::shared_ptr<const Groups>> groups_;
};

}  // namespace

std::unique_ptr<TensorCodec> MakeBlockGtqCodec(const kvc_tensor_config& c, uint32_t d) {
  return std::make_unique<BlockGtqCodec>(c, d);
}

}  // namespace kvc
