// SIMD pair angles and radii (base/portable_math.h), bit-identical to
// AngleBin and to sqrt(x * x + y * y) on every target, and the kernels of
// the angle methods built on them.
#ifndef KVCODEC_CODEC_SIMD_ANGLE_KERNELS_H_
#define KVCODEC_CODEC_SIMD_ANGLE_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace kvc {
namespace simd {

// For the pairs (v[2i], v[2i+1]), i < pairs (finite values): bins[i] =
// AngleBin(v[2i], v[2i+1], n) (n in 1..65536) and, if radii is not null,
// radii[i] = sqrt(v[2i] * v[2i] + v[2i+1] * v[2i+1]).
void PairAngles(const float* v, size_t pairs, uint32_t n, uint32_t* bins, float* radii);

// PolarQuant's fold of radii (quant/polarquant_codec.cc): for the pairs
// (e, o) = (r[2i], r[2i+1]), bins[i] = number of k < count with
// o > tan_thresholds[k] * e, and radii[i] = sqrt(e * e + o * o).
void FoldPairs(const float* r, size_t pairs, const float* tan_thresholds, size_t count,
               uint32_t* bins, float* radii);

// TurboAngle rows (quant/turboangle_codec.cc) for bin counts n = 2^k, k <= 8,
// whose angle record is the k-bit digits packed LSB first, and 8-bit linear
// or 4-bit log radii: every pair's bin, radius and code in registers, the
// same bytes and values as the codec's step-by-step reference path.
struct TaRows {
  size_t pairs;      // head_dim / 2
  int digit_bits;    // k: n = 2^k bins (1..8); pairs * k a multiple of 8
  bool log4;         // 4-bit log radii (else 8-bit linear)
  // The 15 ascending LOG4 thresholds and 16 levels, in rms units (always
  // given: the kernels prepare them whatever the format).
  const float* log4_thresholds;
  const float* log4_levels;
  // Decode: bin b's centre as float bits, cos | sin << 32 (2^k entries).
  const uint64_t* cos_sin;
};

// For n < count, from the rotated vector y + n * 2 * pairs and
// inverse_rms[n] (f32(sqrt(d/2)) / stored norm, or 0): the angle record
// (pairs * k / 8 bytes) at angles + n * that, and the radius codes of
// u = r * inverse_rms (LINEAR8: min(u * 63.75 + 0.5, 255) truncated; LOG4:
// thresholds below u, packed LSB first) at radii + n * their bytes. False,
// writing nothing, where no kernel applies (target, pair count).
bool TaEncodeRows(const TaRows& rows, const float* y, size_t count, const float* inverse_rms,
                  uint8_t* angles, uint8_t* radii);

// The rotated-domain reconstruction: y + n * 2 * pairs gets r * cos, r * sin
// of every pair, r = level(code) * rms[n] (LINEAR8: f32(code * 4 / 255.0),
// in double; LOG4: log4_levels). False, writing nothing, where no kernel
// applies.
bool TaDecodeRows(const TaRows& rows, const uint8_t* angles, const uint8_t* radii,
                  const float* rms, size_t count, float* y);

// PolarQuant rows (quant/polarquant_codec.cc): the recursive polar
// transform of every group of 16 rotated coordinates, levels in registers,
// the codes of a group packed as one bit field (level 1's 8 codes, then
// level 2's 4, level 3's 2, level 4's 1, LSB first; groups back to back,
// the record padded to whole bytes), as the codec's bit writer lays them out.
struct PqRows {
  size_t dim;   // a multiple of 16: dim / 16 groups
  int bits[4];  // per level: 1..8 (level 1), 1..4 (levels 2-4)
  // Levels 2-4 (index 0-2): the 2^b - 1 ascending tangents of the angle
  // thresholds, and the centroids' cosines and sines, 16 entries each
  // (those past 2^b are never used).
  const float* tan_thresholds[3];
  const float* cosines[3];
  const float* sines[3];
  // Level 1: the cosines and sines of the bin centres, max(2^b, 16) entries
  // (padded as above), and as float bits, cos | sin << 32 (2^b entries).
  const float* circle_cos;
  const float* circle_sin;
  const uint64_t* circle_cos_sin;
};

// For n < count, from the rotated vector y + n * dim: the record of its
// codes at angles + n * record bytes (ceil(dim / 16 * group bits / 8)), and
// its group radii at radii + n * dim / 16 (for the caller to store and
// check). False, writing nothing, where no kernel applies.
bool PqEncodeRows(const PqRows& rows, const float* y, size_t count, uint8_t* angles,
                  float* radii);

// The inverse for records whose group radii (radii + n * dim / 16) are
// valid and whose padding is zero: y + n * dim = the rotated-domain
// reconstruction. False, writing nothing, where no kernel applies.
bool PqDecodeRows(const PqRows& rows, const uint8_t* angles, const float* radii, size_t count,
                  float* y);

}  // namespace simd
}  // namespace kvc

#endif  // KVCODEC_CODEC_SIMD_ANGLE_KERNELS_H_
