// The random numbers of the format (FORMAT.md, "PRNG"). Everything random in
// a stream (rotation signs, the QJL matrix) is regenerated from a 64-bit seed
// with these exactly specified functions, so any implementation in any
// language reproduces it bit for bit. Never replace them with a library
// generator.
#ifndef KVCODEC_CODEC_BASE_PRNG_H_
#define KVCODEC_CODEC_BASE_PRNG_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvc {

// SplitMix64 (Steele, Lea, Flood 2014).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform double in [-1, 1): 53 random bits.
  double NextSigned() {
    return static_cast<double>(Next() >> 11) * 0x1.0p-52 - 1.0;
  }

 private:
  uint64_t state_;
};

// Natural logarithm of x > 0 (finite, normal), computed in IEEE double with
// only +, -, *, / in a fixed order, so it is reproducible everywhere
// (unlike libm's log). Accurate to a few ulp; FORMAT.md spells it out.
double PortableLog(double x);

// Standard normal samples by Marsaglia's polar method on SplitMix64, with
// PortableLog: a pair per accepted draw, the first returned first.
class GaussianSource {
 public:
  explicit GaussianSource(uint64_t seed) : rng_(seed) {}
  double Next();

 private:
  SplitMix64 rng_;
  double spare_ = 0;
  bool has_spare_ = false;
};

// Derives independent generator seeds from one config seed: domain separation
// by a tag, hashed through one SplitMix64 step.
inline uint64_t DeriveSeed(uint64_t seed, uint64_t tag) {
  return SplitMix64(seed ^ tag).Next();
}

// Tags (ASCII, big-endian reading) used by the format.
constexpr uint64_t kTagRotation = 0x524F544154494F4Eull;  // "ROTATION"
constexpr uint64_t kTagQjl = 0x514A4C4D41545249ull;       // "QJLMATRI"

// TurboQuant-prod's QJL matrix S for a head dim d (FORMAT.md §9.3): d x d,
// row-major, S[i][j] the f32 rounding of the (i d + j)-th Gaussian sample of
// DeriveSeed(seed, QJLMATRI).
std::vector<float> QjlMatrix(uint64_t seed, size_t d);

}  // namespace kvc

#endif  // KVCODEC_CODEC_BASE_PRNG_H_
