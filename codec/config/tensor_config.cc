#include "config/tensor_config.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/endian.h"
#include "base/sized_struct.h"

namespace kvc {
namespace {

// Config_Flags this version defines (format 1.2); other bits are a later
// version's: UNSUPPORTED_FEATURE when read.
constexpr uint32_t kKnownConfigFlags = KVC_CONFIG_NORM_CORRECTION | KVC_CONFIG_CENTERED;

const char* DtypeName(uint32_t dtype) {
  switch (dtype) {
    case KVC_DTYPE_F32: return "f32";
    case KVC_DTYPE_F16: return "f16";
    case KVC_DTYPE_BF16: return "bf16";
  }
  return "?";
}

bool ParseDtype(const std::string& s, uint32_t* dtype) {
  for (uint32_t d : {KVC_DTYPE_F32, KVC_DTYPE_F16, KVC_DTYPE_BF16}) {
    if (s == DtypeName(d)) {
      *dtype = d;
      return true;
    }
  }
  return false;
}

std::vector<std::string> Split(const std::string& s, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t end = s.find(separator, start);
    parts.push_back(s.substr(start, end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

}  // namespace

kvc_tensor_config DefaultTensorConfig() {
  kvc_tensor_config c;
  std::memset(&c, 0, sizeof(c));
  c.struct_size = sizeof(kvc_tensor_config);
  c.method = KVC_METHOD_TQ_MSE;
  c.bits = 4;
  c.scalar_format = KVC_DTYPE_F16;
  c.flags = 0;
  c.rotation = KVC_ROTATION_HADAMARD;
  c.seed = kDefaultSeed;
  return c;
}

Status ImportTensorConfig(const kvc_tensor_config* in, kvc_tensor_config* out) {
  return ImportSized(in, DefaultTensorConfig(), out, "tensor config");
}

Status ValidateTensorConfig(const kvc_tensor_config& c, const std::string& what) {
  auto invalid = [&](const std::string& problem) {
    return Status(KVC_ERR_INVALID_ARGUMENT, what + ": " + problem);
  };
  if (c.scalar_format > KVC_DTYPE_BF16) {
    return invalid(StrFormat("scalar format %u unknown", c.scalar_format));
  }
  if (c.flags & ~kKnownConfigFlags) {
    return invalid(StrFormat("unknown flags 0x%x", c.flags));
  }
  if (c.rotation > KVC_ROTATION_HADAMARD) {
    return invalid(StrFormat("rotation %u unknown", c.rotation));
  }
  // Parameters a method does not use must be zero, so that a config has one
  // wire form and compares equal to its decoded self.
  const bool uses_outliers = c.method == KVC_METHOD_TQ_OUTLIER;
  const bool uses_angles = c.method == KVC_METHOD_TURBOANGLE;
  const bool uses_levels = c.method == KVC_METHOD_POLARQUANT;
  const bool uses_gtq = c.method == KVC_METHOD_BLOCKGTQ;
  if ((!uses_outliers && c.outlier_sixteenths) ||
      (!uses_angles && (c.angle_bins || c.radius_format)) ||
      (!uses_levels && c.level_bits) || (!uses_gtq && (c.min_bits || c.rope_pairing))) {
    return invalid("sets parameters of another method");
  }
  switch (c.method) {
    case KVC_METHOD_RAW:
      if (c.bits != 8 * DtypeBytes(c.scalar_format)) {
        return invalid(StrFormat("raw-%s stores %zu bits, not %u",
                                 DtypeName(c.scalar_format),
                                 8 * DtypeBytes(c.scalar_format), c.bits));
      }
      if (c.flags != 0 || c.rotation != KVC_ROTATION_NONE) {
        return invalid("raw takes no rotation and no flags");
      }
      return OkStatus();
    case KVC_METHOD_TQ_MSE:
      if (c.bits < 1 || c.bits > 8) {
        return invalid(StrFormat("tq-mse bits must be 1..8, not %u", c.bits));
      }
      return OkStatus();
    case KVC_METHOD_TQ_PROD:
      if (c.bits < 2 || c.bits > 8) {
        return invalid(StrFormat("tq-prod bits must be 2..8, not %u", c.bits));
      }
      return OkStatus();
    case KVC_METHOD_TQ_OUTLIER:
      if (c.bits < 1 || c.bits > 7) {
        return invalid(StrFormat("outlier split bits must be 1..7, not %u", c.bits));
      }
      if (c.outlier_sixteenths < 1 || c.outlier_sixteenths > 15) {
        return invalid(StrFormat("outlier share must be 1..15 sixteenths, not %u",
                                 c.outlier_sixteenths));
      }
      return OkStatus();
    case KVC_METHOD_POLARQUANT:
      if (c.bits != 0) return invalid("polarquant takes level bits, not bits");
      if (c.flags & KVC_CONFIG_NORM_CORRECTION) {
        return invalid("polarquant takes no norm correction");
      }
      for (int level = 0; level < 4; ++level) {
        const uint32_t b = (c.level_bits >> (12 - 4 * level)) & 0xF;
        if (b < 1 || b > (level == 0 ? 8u : 4u)) {
          return invalid(StrFormat("polarquant level %d bits %u out of range "
                                   "(level 1: 1..8, levels 2-4: 1..4)", level + 1, b));
        }
      }
      if (c.level_bits > 0xFFFF) return invalid("polarquant level bits malformed");
      return OkStatus();
    case KVC_METHOD_TURBOANGLE:
      if (c.bits != 0) return invalid("turboangle takes angle bins, not bits");
      if (c.angle_bins < 2 || c.angle_bins > 4096) {
        return invalid(StrFormat("turboangle bins must be 2..4096, not %u", c.angle_bins));
      }
      if (c.radius_format > KVC_RADIUS_LOG4) {
        return invalid(StrFormat("radius format %u unknown", c.radius_format));
      }
      return OkStatus();
    case KVC_METHOD_BLOCKGTQ:
      if (c.bits < 1 || c.bits > 8) {
        return invalid(StrFormat("block-gtq average bits must be 1..8, not %u", c.bits));
      }
      if (c.min_bits > 1 || c.min_bits > c.bits) {
        return invalid(StrFormat("block-gtq min bits must be 0 or 1, not %u", c.min_bits));
      }
      if (c.rope_pairing > KVC_ROPE_INTERLEAVED) {
        return invalid(StrFormat("rope pairing %u unknown", c.rope_pairing));
      }
      return OkStatus();
  }
  return invalid(StrFormat("method %u unknown", c.method));
}

Status ValidateForHeadDim(const kvc_tensor_config& c, uint32_t d,
                          const std::string& what) {
  auto invalid = [&](const std::string& problem) {
    return Status(KVC_ERR_INVALID_ARGUMENT, what + ": " + problem);
  };
  if (c.method == KVC_METHOD_TQ_OUTLIER) {
    const uint32_t outliers = d * c.outlier_sixteenths / 16;
    if ((d * c.outlier_sixteenths) % 16 != 0 || outliers % 8 != 0 ||
        outliers < 8 || d - outliers < 8) {
      return invalid(StrFormat("%u/16 of head_dim %u is not a split into multiples "
                               "of 8 channels", c.outlier_sixteenths, d));
    }
  }
  if (c.method == KVC_METHOD_POLARQUANT && d % 16 != 0) {
    return invalid(StrFormat("polarquant needs head_dim a multiple of 16, not %u", d));
  }
  return OkStatus();
}

size_t TensorConfigWireSize(const kvc_tensor_config& c) {
  return c.method >= KVC_METHOD_TQ_OUTLIER ? kTensorConfigFixedSize + 4
                                           : kTensorConfigFixedSize;
}

void WriteTensorConfig(const kvc_tensor_config& c, uint8_t* out) {
  out[0] = static_cast<uint8_t>(c.method);
  out[1] = static_cast<uint8_t>(c.bits);
  out[2] = static_cast<uint8_t>(c.scalar_format);
  out[3] = static_cast<uint8_t>(c.flags);
  out[4] = static_cast<uint8_t>(c.rotation);
  out[5] = 0;  // Reserved
  const size_t params = TensorConfigWireSize(c) - kTensorConfigFixedSize;
  StoreLE16(static_cast<uint16_t>(params), out + 6);
  // RAW uses no randomness: its seed is 0 on the wire, whatever the caller's.
  StoreLE64(c.method == KVC_METHOD_RAW ? 0 : c.seed, out + 8);
  if (params == 0) return;
  uint8_t* p = out + kTensorConfigFixedSize;
  p[0] = p[1] = p[2] = p[3] = 0;
  switch (c.method) {
    case KVC_METHOD_TQ_OUTLIER: p[0] = static_cast<uint8_t>(c.outlier_sixteenths); break;
    case KVC_METHOD_POLARQUANT:
      for (int level = 0; level < 4; ++level) {
        p[level] = static_cast<uint8_t>((c.level_bits >> (12 - 4 * level)) & 0xF);
      }
      break;
    case KVC_METHOD_TURBOANGLE:
      StoreLE16(static_cast<uint16_t>(c.angle_bins), p);
      p[2] = static_cast<uint8_t>(c.radius_format);
      break;
    case KVC_METHOD_BLOCKGTQ:
      p[0] = static_cast<uint8_t>(c.min_bits);
      p[1] = static_cast<uint8_t>(c.rope_pairing);
      break;
  }
}

Status ReadTensorConfig(const uint8_t* in, size_t size, kvc_tensor_config* c,
                        size_t* wire_size) {
  if (size < kTensorConfigFixedSize) {
    return Status(KVC_ERR_CORRUPT, "tensor config truncated");
  }
  *c = DefaultTensorConfig();
  c->method = in[0];
  c->bits = in[1];
  c->scalar_format = in[2];
  c->flags = in[3];
  c->rotation = in[4];
  c->seed = LoadLE64(in + 8);
  if (c->method == 0) return Status(KVC_ERR_CORRUPT, "tensor config: method 0");
  // Values a later format version may define: unsupported, not corrupt.
  if (c->method > KVC_METHOD_BLOCKGTQ || c->scalar_format > KVC_DTYPE_BF16 ||
      c->rotation > KVC_ROTATION_HADAMARD || (c->flags & ~kKnownConfigFlags)) {
    return Status(KVC_ERR_UNSUPPORTED_FEATURE,
                  StrFormat("tensor config (method %u, scalar format %u, rotation %u, "
                            "flags 0x%x) unknown to this decoder", c->method,
                            c->scalar_format, c->rotation, c->flags));
  }
  const size_t params = LoadLE16(in + 6);
  if (in[5] != 0 || kTensorConfigFixedSize + params != TensorConfigWireSize(*c)) {
    return Status(KVC_ERR_CORRUPT, "tensor config: reserved or size field invalid");
  }
  if (size < kTensorConfigFixedSize + params) {
    return Status(KVC_ERR_CORRUPT, "tensor config truncated");
  }
  const uint8_t* p = in + kTensorConfigFixedSize;
  bool reserved_clear = true;
  switch (c->method) {
    case KVC_METHOD_TQ_OUTLIER:
      c->outlier_sixteenths = p[0];
      reserved_clear = (p[1] | p[2] | p[3]) == 0;
      break;
    case KVC_METHOD_POLARQUANT:
      for (int level = 0; level < 4; ++level) {
        reserved_clear = reserved_clear && p[level] <= 0xF;
        c->level_bits |= static_cast<uint32_t>(p[level] & 0xF) << (12 - 4 * level);
      }
      break;
    case KVC_METHOD_TURBOANGLE:
      c->angle_bins = LoadLE16(p);
      c->radius_format = p[2];
      reserved_clear = p[3] == 0;
      break;
    case KVC_METHOD_BLOCKGTQ:
      c->min_bits = p[0];
      c->rope_pairing = p[1];
      // On the wire the pairing is always explicit.
      reserved_clear = (p[2] | p[3]) == 0 && c->rope_pairing != KVC_ROPE_UNKNOWN;
      break;
  }
  if (!reserved_clear || (c->method == KVC_METHOD_RAW && c->seed != 0)) {
    return Status(KVC_ERR_CORRUPT, "tensor config: reserved parameter bytes not zero");
  }
  Status status = ValidateTensorConfig(*c, "tensor config");
  if (!status.ok()) return Status(KVC_ERR_CORRUPT, status.message());
  *wire_size = kTensorConfigFixedSize + params;
  return OkStatus();
}

namespace {

bool ParseNumber(const std::string& s, uint32_t max, uint32_t* value) {
  if (s.empty() || s.size() > 5) return false;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
  }
  const unsigned long v = std::strtoul(s.c_str(), nullptr, 10);
  if (v > max) return false;
  *value = static_cast<uint32_t>(v);
  return true;
}

const char* RadiusName(uint32_t format) {
  switch (format) {
    case KVC_RADIUS_EXACT: return "exact";
    case KVC_RADIUS_LINEAR8: return "lin8";
    case KVC_RADIUS_LOG4: return "log4";
  }
  return "?";
}

// Decimal digits, or 0x and hex digits; nothing else (no sign, no octal).
bool ParseSeed(const std::string& s, uint64_t* seed) {
  const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  const std::string digits = hex ? s.substr(2) : s;
  if (digits.empty() || digits.size() > (hex ? 16u : 20u)) return false;
  for (char ch : digits) {
    if (!(hex ? std::isxdigit(static_cast<unsigned char>(ch)) : std::isdigit(static_cast<unsigned char>(ch)))) {
      return false;
    }
  }
  errno = 0;
  *seed = std::strtoull(digits.c_str(), nullptr, hex ? 16 : 10);
  return errno == 0;
}

// "tq-mse-b2.5": the bits and, for fractional rates, the outlier share.
bool ParseTqBits(const std::string& s, kvc_tensor_config* c) {
  if (s.size() < 2 || s[0] != 'b') return false;
  const size_t dot = s.find('.');
  if (!ParseNumber(s.substr(1, dot - 1), 8, &c->bits)) return false;
  if (dot == std::string::npos) return true;
  const std::string fraction = s.substr(dot + 1);
  const uint32_t sixteenths = fraction == "25" ? 4 : fraction == "5" ? 8
                              : fraction == "75" ? 12 : 0;
  if (sixteenths == 0) return false;
  c->method = KVC_METHOD_TQ_OUTLIER;
  c->outlier_sixteenths = sixteenths;
  return true;
}

}  // namespace

Status ParseMethodString(const std::string& text, kvc_tensor_config* out) {
  auto bad = [&](const std::string& why) {
    return Status(KVC_ERR_INVALID_ARGUMENT, "method '" + text + "': " + why);
  };
  kvc_tensor_config c = DefaultTensorConfig();
  const size_t colon = text.find(':');
  const std::vector<std::string> parts = Split(text.substr(0, colon), '-');
  const std::string& family = parts[0];
  if (parts.size() == 2 && family == "raw") {
    if (!ParseDtype(parts[1], &c.scalar_format)) return bad("unknown dtype");
    c.method = KVC_METHOD_RAW;
    c.bits = static_cast<uint32_t>(8 * DtypeBytes(c.scalar_format));
    c.rotation = KVC_ROTATION_NONE;
    c.seed = 0;
  } else if (parts.size() == 3 && family == "tq" && parts[1] == "mse") {
    c.method = KVC_METHOD_TQ_MSE;
    if (!ParseTqBits(parts[2], &c)) return bad("expected bits as bN, bN.25, bN.5 or bN.75");
  } else if (parts.size() == 3 && family == "tq" && parts[1] == "prod") {
    c.method = KVC_METHOD_TQ_PROD;
    if (parts[2].size() < 2 || parts[2][0] != 'b' ||
        !ParseNumber(parts[2].substr(1), 8, &c.bits)) {
      return bad("expected bits as bN");
    }
  } else if (parts.size() == 2 && family == "polar") {
    c.method = KVC_METHOD_POLARQUANT;
    c.bits = 0;
    if (parts[1].size() != 4) return bad("expected four level bit widths, as polar-4222");
    for (char digit : parts[1]) {
      if (digit < '1' || digit > '8') return bad("level bits must be digits 1..8");
      c.level_bits = (c.level_bits << 4) | static_cast<uint32_t>(digit - '0');
    }
  } else if (parts.size() == 2 && family == "angle") {
    c.method = KVC_METHOD_TURBOANGLE;
    c.bits = 0;
    c.radius_format = KVC_RADIUS_LINEAR8;
    if (parts[1].size() < 2 || parts[1][0] != 'n' ||
        !ParseNumber(parts[1].substr(1), 99999, &c.angle_bins)) {
      return bad("expected the bin count as nN, as angle-n128");
    }
  } else if (parts.size() == 2 && family == "gtq") {
    c.method = KVC_METHOD_BLOCKGTQ;
    c.min_bits = 1;
    if (parts[1].size() < 2 || parts[1][0] != 'b' ||
        !ParseNumber(parts[1].substr(1), 8, &c.bits)) {
      return bad("expected the average bits as bN, as gtq-b3");
    }
  } else {
    return bad("unknown method (raw-DTYPE, tq-mse-bN[.5], tq-prod-bN, polar-LLLL, "
               "angle-nN, gtq-bN)");
  }
  if (colon != std::string::npos) {
    if (c.method == KVC_METHOD_RAW) return bad("raw takes no options");
    for (const std::string& option : Split(text.substr(colon + 1), ',')) {
      const size_t eq = option.find('=');
      const std::string key = option.substr(0, eq);
      const std::string value = eq == std::string::npos ? "" : option.substr(eq + 1);
      if (key == "nc" && eq == std::string::npos) {
        c.flags |= KVC_CONFIG_NORM_CORRECTION;
      } else if (key == "center" && eq == std::string::npos) {
        c.flags |= KVC_CONFIG_CENTERED;
      } else if (key == "norm" && ParseDtype(value, &c.scalar_format)) {
      } else if (key == "rot" && (value == "hadamard" || value == "none")) {
        c.rotation = value == "none" ? KVC_ROTATION_NONE : KVC_ROTATION_HADAMARD;
      } else if (key == "seed") {
        if (!ParseSeed(value, &c.seed)) {
          return bad("seed must be a decimal or 0x-prefixed hex number below 2^64");
        }
      } else if (key == "radius" && c.method == KVC_METHOD_TURBOANGLE &&
                 (value == "exact" || value == "lin8" || value == "log4")) {
        c.radius_format = value == "exact"  ? KVC_RADIUS_EXACT
                          : value == "lin8" ? KVC_RADIUS_LINEAR8
                                            : KVC_RADIUS_LOG4;
      } else if (key == "min" && c.method == KVC_METHOD_BLOCKGTQ &&
                 ParseNumber(value, 1, &c.min_bits)) {
      } else if (key == "pair" && c.method == KVC_METHOD_BLOCKGTQ &&
                 (value == "half" || value == "interleaved")) {
        c.rope_pairing = value == "half" ? KVC_ROPE_SPLIT_HALF : KVC_ROPE_INTERLEAVED;
      } else if (key == "out" && c.method == KVC_METHOD_TQ_MSE &&
                 ParseNumber(value, 15, &c.outlier_sixteenths) && c.outlier_sixteenths > 0) {
        c.method = KVC_METHOD_TQ_OUTLIER;
      } else {
        return bad("unknown option '" + option +
                   "' (nc, center, norm=f16|bf16|f32, rot=hadamard|none, seed=N; angle: "
                   "radius=lin8|log4|exact; gtq: min=0|1, pair=half|interleaved; "
                   "tq-mse: out=SIXTEENTHS)");
      }
    }
  }
  KVC_RETURN_IF_ERROR(ValidateTensorConfig(c, "method '" + text + "'"));
  *out = c;
  return OkStatus();
}

std::string FormatMethodString(const kvc_tensor_config& c) {
  std::string s;
  std::vector<std::string> options;
  switch (c.method) {
    case KVC_METHOD_RAW: return std::string("raw-") + DtypeName(c.scalar_format);
    case KVC_METHOD_TQ_MSE: s = "tq-mse-b" + std::to_string(c.bits); break;
    case KVC_METHOD_TQ_PROD: s = "tq-prod-b" + std::to_string(c.bits); break;
    case KVC_METHOD_TQ_OUTLIER:
      s = "tq-mse-b" + std::to_string(c.bits);
      if (c.outlier_sixteenths == 4) {
        s += ".25";
      } else if (c.outlier_sixteenths == 8) {
        s += ".5";
      } else if (c.outlier_sixteenths == 12) {
        s += ".75";
      } else {
        options.push_back("out=" + std::to_string(c.outlier_sixteenths));
      }
      break;
    case KVC_METHOD_POLARQUANT: s = StrFormat("polar-%04x", c.level_bits); break;
    case KVC_METHOD_TURBOANGLE:
      s = "angle-n" + std::to_string(c.angle_bins);
      if (c.radius_format != KVC_RADIUS_LINEAR8) {
        options.push_back(std::string("radius=") + RadiusName(c.radius_format));
      }
      break;
    case KVC_METHOD_BLOCKGTQ:
      s = "gtq-b" + std::to_string(c.bits);
      if (c.min_bits != 1) options.push_back("min=" + std::to_string(c.min_bits));
      if (c.rope_pairing != KVC_ROPE_UNKNOWN) {
        options.push_back(c.rope_pairing == KVC_ROPE_SPLIT_HALF ? "pair=half"
                                                                : "pair=interleaved");
      }
      break;
  }
  if (c.scalar_format != KVC_DTYPE_F16) {
    options.push_back(std::string("norm=") + DtypeName(c.scalar_format));
  }
  if (c.flags & KVC_CONFIG_NORM_CORRECTION) options.push_back("nc");
  if (c.flags & KVC_CONFIG_CENTERED) options.push_back("center");
  if (c.rotation == KVC_ROTATION_NONE) options.push_back("rot=none");
  if (c.seed != kDefaultSeed) {
    options.push_back(StrFormat("seed=0x%llx", static_cast<unsigned long long>(c.seed)));
  }
  for (size_t i = 0; i < options.size(); ++i) s += (i == 0 ? ":" : ",") + options[i];
  return s;
}

uint32_t FormatMinorOf(const kvc_tensor_config& c) {
  return (c.flags & KVC_CONFIG_CENTERED) ? 2 : 0;
}

bool SameTensorConfig(const kvc_tensor_config& a, const kvc_tensor_config& b) {
  const bool seeded = a.method != KVC_METHOD_RAW;  // RAW ignores its seed
  return a.method == b.method && a.bits == b.bits &&
         a.scalar_format == b.scalar_format && a.flags == b.flags &&
         a.rotation == b.rotation && (!seeded || a.seed == b.seed) &&
         a.outlier_sixteenths == b.outlier_sixteenths &&
         a.angle_bins == b.angle_bins && a.radius_format == b.radius_format &&
         a.level_bits == b.level_bits && a.min_bits == b.min_bits &&
         a.rope_pairing == b.rope_pairing;
}

}  // namespace kvc
