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

#include "base/prng.h"
#include "config/tensor_config.h"
#include "quant/mse_quantizer.h"
#include "quant/tensor_codec.h"
#include "quant/vector_math.h"
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

  Status Encode(const uint8_t* record, const float* x, size_t count,
                uint8_t* const* sections, size_t* bad_vector) const override {
    const Groups groups = MakeGroups(record);
    const size_t norm_bytes = SectionWidths(record)[0] / 8;
    const size_t d = head_dim();
    std::vector<float> part(d), work(d);
    std::vector<uint8_t> indices(d);
    BitWriter writer(sections[1]);
    for (size_t n = 0; n < count; ++n) {
      *bad_vector = n;
      uint8_t* norms = sections[0] + n * norm_bytes;
      for (size_t g = 0; g < groups.quantizers.size(); ++g) {
        const MseQuantizer& q = *groups.quantizers[g];
        const std::vector<uint32_t>& dims = groups.dims[g];
        for (size_t j = 0; j < dims.size(); ++j) part[j] = x[n * d + dims[j]];
        std::fill(indices.begin(), indices.begin() + q.index_bytes(), 0);
        KVC_RETURN_IF_ERROR(q.Encode(part.data(), work.data(), norms + g * q.norm_bytes(),
                                     indices.data()));
        // Groups follow each other in one bit stream, without padding.
        BitReader reader(indices.data());
        for (size_t j = 0; j < dims.size(); ++j) {
          writer.Put(reader.Get(groups.bits[g]), groups.bits[g]);
        }
      }
    }
    return OkStatus();
  }

  Status Decode(const uint8_t* record, const uint8_t* const* sections, size_t count,
                float* out, size_t* bad_vector) const override {
    const Groups groups = MakeGroups(record);
    const size_t norm_bytes = SectionWidths(record)[0] / 8;
    const size_t d = head_dim();
    std::vector<float> part(d);
    std::vector<uint8_t> indices(d);
    BitReader reader(sections[1]);
    for (size_t n = 0; n < count; ++n) {
      *bad_vector = n;
      float* y = out + n * d;
      std::fill(y, y + d, 0.0f);  // blocks given 0 bits decode to 0
      const uint8_t* norms = sections[0] + n * norm_bytes;
      for (size_t g = 0; g < groups.quantizers.size(); ++g) {
        const MseQuantizer& q = *groups.quantizers[g];
        const std::vector<uint32_t>& dims = groups.dims[g];
        std::fill(indices.begin(), indices.begin() + q.index_bytes(), 0);
        BitWriter writer(indices.data());
        for (size_t j = 0; j < dims.size(); ++j) {
          writer.Put(reader.Get(groups.bits[g]), groups.bits[g]);
        }
        KVC_RETURN_IF_ERROR(q.Decode(norms + g * q.norm_bytes(), indices.data(), part.data()));
        for (size_t j = 0; j < dims.size(); ++j) y[dims[j]] = part[j];
      }
    }
    return OkStatus();
  }

 private:
  struct Groups {
    std::vector<int> bits;                      // per group
    std::vector<std::vector<uint32_t>> dims;    // per group, ascending blocks
    std::vector<std::unique_ptr<MseQuantizer>> quantizers;
  };

  // The two dimensions of RoPE block i.
  std::pair<uint32_t, uint32_t> BlockDims(size_t i) const {
    if (config_.rope_pairing == KVC_ROPE_INTERLEAVED) {
      return {static_cast<uint32_t>(2 * i), static_cast<uint32_t>(2 * i + 1)};
    }
    return {static_cast<uint32_t>(i), static_cast<uint32_t>(i + blocks_)};
  }

  void Accumulate(const float* x, size_t count, double* energy) const {
    for (size_t n = 0; n < count; ++n) {
      const float* v = x + n * head_dim();
      for (size_t i = 0; i < blocks_; ++i) {
        const auto [a, b] = BlockDims(i);
        energy[i] += static_cast<double>(v[a]) * v[a] + static_cast<double>(v[b]) * v[b];
      }
    }
  }

  // Greedy: every block starts at min_bits; each further bit goes to the
  // block of largest s_i * 4^-b_i (ties: the lowest block).
  std::vector<uint32_t> Allocate(const std::vector<double>& score, uint32_t total) const {
    std::vector<uint32_t> bits(blocks_, config_.min_bits);
    for (uint32_t spent = config_.min_bits * static_cast<uint32_t>(blocks_); spent < total;
         ++spent) {
      size_t pick = blocks_;
      double gain = -1;
      for (size_t i = 0; i < blocks_; ++i) {
        const double g = std::ldexp(score[i], -2 * int(bits[i]));
        if (bits[i] < kMaxBlockBits && g > gain) {
          gain = g;
          pick = i;
        }
      }
      if (pick == blocks_) break;
      ++bits[pick];
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

  // Groups in ascending width; each one's seed is derived from the width.
  Groups MakeGroups(const uint8_t* record) const {
    const std::vector<uint32_t> bits = Bits(record);
    Groups groups;
    for (int width = 1; width <= kMaxBlockBits; ++width) {
      std::vector<uint32_t> dims;
      for (size_t i = 0; i < blocks_; ++i) {
        if (bits[i] != static_cast<uint32_t>(width)) continue;
        const auto [a, b] = BlockDims(i);
        dims.push_back(a);
        dims.push_back(b);
      }
      if (dims.empty()) continue;
      std::sort(dims.begin(), dims.end());
      const uint32_t rotation =
          width >= 3 ? config_.rotation : static_cast<uint32_t>(KVC_ROTATION_NONE);
      groups.bits.push_back(width);
      groups.quantizers.push_back(std::make_unique<MseQuantizer>(
          static_cast<uint32_t>(dims.size()), width, rotation,
          DeriveSeed(config_.seed, static_cast<uint64_t>(width)),
          (config_.flags & KVC_CONFIG_NORM_CORRECTION) != 0, config_.scalar_format));
      groups.dims.push_back(std::move(dims));
    }
    return groups;
  }

  kvc_tensor_config config_;
  size_t blocks_;
  uint32_t norm_bits_;
};

}  // namespace

std::unique_ptr<TensorCodec> MakeBlockGtqCodec(const kvc_tensor_config& c, uint32_t d) {
  return std::make_unique<BlockGtqCodec>(c, d);
}

}  // namespace kvc
