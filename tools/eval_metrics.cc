#include "tools/eval_metrics.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kvc::tools {
namespace {

// Key columns per tile of the logit products: a tile of the transposed keys
// and of their errors (2 x head_dim x kTile floats, 128 KiB at head_dim 128)
// stays in L2 cache while every query row passes over it.
constexpr size_t kTile = 128;

// Adds KL(p‖p̂) for one query row, where p = softmax(x), p̂ = softmax(y) with
// x_s = logits[s]·scale and y_s = (logits[s] − errors[s])·scale, s < count.
// In double, subtracting each row's maximum before exponentiating.
double RowKl(const float* logits, const float* errors, size_t count,
             double scale, std::vector<double>* p) {
  double max_x = -INFINITY;
  double max_y = -INFINITY;
  for (size_t s = 0; s < count; ++s) {
    max_x = std::max(max_x, logits[s] * scale);
    max_y = std::max(max_y, (double{logits[s]} - errors[s]) * scale);
  }
  double sum_x = 0;
  double sum_y = 0;
  for (size_t s = 0; s < count; ++s) {
    (*p)[s] = std::exp(logits[s] * scale - max_x);
    sum_x += (*p)[s];
    sum_y += std::exp((double{logits[s]} - errors[s]) * scale - max_y);
  }
  // KL = Σ p_s (log p_s − log p̂_s) = Σ p_s (x_s − y_s) − lse(x) + lse(y).
  double expected_gap = 0;
  for (size_t s = 0; s < count; ++s) {
    expected_gap += (*p)[s] * (errors[s] * scale);
  }
  expected_gap /= sum_x;
  return expected_gap - (max_x + std::log(sum_x)) + (max_y + std::log(sum_y));
}

}  // namespace

ErrorEnergy CompareValues(const float* x, const float* x_hat, size_t count) {
  ErrorEnergy energy;
  for (size_t i = 0; i < count; ++i) {
    const double diff = double{x[i]} - x_hat[i];
    energy.error += diff * diff;
    energy.reference += double{x[i]} * x[i];
  }
  return energy;
}

AttentionError CompareAttention(const float* q, const float* k,
                                const float* k_hat,
                                const AttentionShape& shape) {
  const size_t tokens = shape.tokens;
  const size_t dim = shape.head_dim;
  const size_t group = shape.q_heads / shape.kv_heads;
  const double scale = 1 / std::sqrt(static_cast<double>(dim));
  // Keys and key errors transposed to [d][s], so that the products of one
  // query with many keys vectorise over s without reassociating any sum.
  // Multiplying q by the key error k − k̂ directly, rather than subtracting
  // q·k̂ from q·k, keeps the logit error exact even when it is tiny.
  std::vector<float> keys(dim * tokens);
  std::vector<float> key_errors(dim * tokens);
  // Logits q_t·k_s and their errors q_t·(k_s − k̂_s) of one query head.
  std::vector<float> logits(tokens * tokens);
  std::vector<float> errors(tokens * tokens);
  std::vector<double> p(tokens);
  AttentionError result;
  for (size_t kv_head = 0; kv_head < shape.kv_heads; ++kv_head) {
    const float* k_head = k + kv_head * tokens * dim;
    const float* k_hat_head = k_hat + kv_head * tokens * dim;
    for (size_t s = 0; s < tokens; ++s) {
      for (size_t d = 0; d < dim; ++d) {
        keys[d * tokens + s] = k_head[s * dim + d];
        key_errors[d * tokens + s] =
            k_head[s * dim + d] - k_hat_head[s * dim + d];
      }
    }
    for (size_t q_head = kv_head * group; q_head < (kv_head + 1) * group;
         ++q_head) {
      const float* q_head_data = q + q_head * tokens * dim;
      std::fill(logits.begin(), logits.end(), 0.0f);
      std::fill(errors.begin(), errors.end(), 0.0f);
      for (size_t s_begin = 0; s_begin < tokens; s_begin += kTile) {
        const size_t s_end = std::min(tokens, s_begin + kTile);
        for (size_t t = 0; t < tokens; ++t) {
          float* logit_row = &logits[t * tokens];
          float* error_row = &errors[t * tokens];
          for (size_t d = 0; d < dim; ++d) {
            const float q_td = q_head_data[t * dim + d];
            const float* key_row = &keys[d * tokens];
            const float* key_error_row = &key_errors[d * tokens];
            for (size_t s = s_begin; s < s_end; ++s) {
              logit_row[s] += q_td * key_row[s];
              error_row[s] += q_td * key_error_row[s];
            }
          }
        }
      }
      for (size_t t = 0; t < tokens; ++t) {
        const float* logit_row = &logits[t * tokens];
        const float* error_row = &errors[t * tokens];
        for (size_t s = 0; s < tokens; ++s) {
          result.logits.error += double{error_row[s]} * error_row[s];
          result.logits.reference += double{logit_row[s]} * logit_row[s];
        }
        result.kl_sum += RowKl(logit_row, error_row, t + 1, scale, &p);
        ++result.kl_count;
      }
    }
  }
  return result;
}

}  // namespace kvc::tools
