// Quality metrics of `kvc eval`: how far decoded keys and values are from the
// originals, and how much that moves attention logits and probabilities.
#ifndef KVCODEC_TOOLS_EVAL_METRICS_H_
#define KVCODEC_TOOLS_EVAL_METRICS_H_

#include <cstddef>
#include <cstdint>

namespace kvc::tools {

// The two sums of a relative squared error Σ(x − x̂)² / Σx², kept apart so
// that they can be added up over layers before dividing.
struct ErrorEnergy {
  double error = 0;      // Σ (x − x̂)²
  double reference = 0;  // Σ x²

  void Add(const ErrorEnergy& other) {
    error += other.error;
    reference += other.reference;
  }
  double Ratio() const { return error / reference; }  // NaN if all x are 0.
};

ErrorEnergy CompareValues(const float* x, const float* x_hat, size_t count);

struct AttentionShape {
  size_t q_heads;   // A multiple of kv_heads (GQA).
  size_t kv_heads;  // Query head h reads KV head h / (q_heads / kv_heads).
  size_t tokens;
  size_t head_dim;
};

struct AttentionError {
  // Over every (query head, query t, key s): q_t·k_s against q_t·k̂_s.
  ErrorEnergy logits;
  // Σ over (query head, t) of KL(p‖p̂), where p is the softmax over the
  // causal keys s ≤ t of q_t·k_s / sqrt(head_dim) and p̂ the same with k̂.
  double kl_sum = 0;
  uint64_t kl_count = 0;  // Number of (query head, t) terms in kl_sum.
};

// One layer: q is [q_heads][tokens][head_dim], k and k_hat are
// [kv_heads][tokens][head_dim], all contiguous.
AttentionError CompareAttention(const float* q, const float* k,
                                const float* k_hat,
                                const AttentionShape& shape);

}  // namespace kvc::tools

#endif  // KVCODEC_TOOLS_EVAL_METRICS_H_
