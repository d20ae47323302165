#include "config/tensor_config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/endian.h"
#include "base/sized_struct.h"

namespace kvc {
namespace {

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

// "b4" -> 4.
bool ParseBits(const std::string& s, uint32_t* bits) {
  if (s.size() != 2 || s[0] != 'b' || s[1] < '0' || s[1] > '9') return false;
  *bits = static_cast<uint32_t>(s[1] - '0');
  return true;
}

}  // namespace

kvc_tensor_config DefaultTensorConfig() {
  kvc_tensor_config c;
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
  if (c.flags & ~KVC_CONFIG_NORM_CORRECTION) {
    return invalid(StrFormat("unknown flags 0x%x", c.flags));
  }
  if (c.rotation > KVC_ROTATION_HADAMARD) {
    return invalid(StrFormat("rotation %u unknown", c.rotation));
  }
  switch (c.method) {
    case KVC_METHOD_RAW:
      if (c.bits != 8 * ScalarBytes(c.scalar_format)) {
        return invalid(StrFormat("raw-%s stores %zu bits, not %u",
                                 DtypeName(c.scalar_format),
                                 8 * ScalarBytes(c.scalar_format), c.bits));
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
  }
  return invalid(StrFormat("method %u unknown", c.method));
}

void WriteTensorConfig(const kvc_tensor_config& c, uint8_t* out) {
  out[0] = static_cast<uint8_t>(c.method);
  out[1] = static_cast<uint8_t>(c.bits);
  out[2] = static_cast<uint8_t>(c.scalar_format);
  out[3] = static_cast<uint8_t>(c.flags);
  out[4] = static_cast<uint8_t>(c.rotation);
  out[5] = 0;             // Reserved
  StoreLE16(0, out + 6);  // Param_Size: no method of format 1.0 has params
  StoreLE64(c.seed, out + 8);
}

Status ReadTensorConfig(const uint8_t* in, kvc_tensor_config* c) {
  *c = DefaultTensorConfig();
  c->method = in[0];
  c->bits = in[1];
  c->scalar_format = in[2];
  c->flags = in[3];
  c->rotation = in[4];
  c->seed = LoadLE64(in + 8);
  if (c->method < KVC_METHOD_RAW || c->method > KVC_METHOD_TQ_PROD) {
    return Status(KVC_ERR_UNSUPPORTED_FEATURE,
                  StrFormat("method %u is not known to this decoder", c->method));
  }
  if (in[5] != 0 || LoadLE16(in + 6) != 0) {
    return Status(KVC_ERR_CORRUPT, "tensor config: reserved bytes not zero");
  }
  Status status = ValidateTensorConfig(*c, "tensor config");
  if (!status.ok()) return Status(KVC_ERR_CORRUPT, status.message());
  return OkStatus();
}

Status ParseMethodString(const std::string& text, kvc_tensor_config* out) {
  auto bad = [&](const std::string& why) {
    return Status(KVC_ERR_INVALID_ARGUMENT,
                  "method '" + text + "': " + why);
  };
  kvc_tensor_config c = DefaultTensorConfig();
  const size_t colon = text.find(':');
  const std::string name = text.substr(0, colon);
  const std::vector<std::string> parts = Split(name, '-');
  if (parts.size() == 2 && parts[0] == "raw") {
    if (!ParseDtype(parts[1], &c.scalar_format)) return bad("unknown dtype");
    c.method = KVC_METHOD_RAW;
    c.bits = static_cast<uint32_t>(8 * ScalarBytes(c.scalar_format));
    c.rotation = KVC_ROTATION_NONE;
  } else if (parts.size() == 3 && parts[0] == "tq" &&
             (parts[1] == "mse" || parts[1] == "prod")) {
    c.method = parts[1] == "mse" ? KVC_METHOD_TQ_MSE : KVC_METHOD_TQ_PROD;
    if (!ParseBits(parts[2], &c.bits)) return bad("expected bits as bN");
  } else {
    return bad("unknown method (expected raw-DTYPE, tq-mse-bN or tq-prod-bN)");
  }
  if (colon != std::string::npos) {
    for (const std::string& option : Split(text.substr(colon + 1), ',')) {
      const size_t eq = option.find('=');
      const std::string key = option.substr(0, eq);
      const std::string value = eq == std::string::npos ? "" : option.substr(eq + 1);
      if (key == "nc" && eq == std::string::npos) {
        c.flags |= KVC_CONFIG_NORM_CORRECTION;
      } else if (key == "norm" && ParseDtype(value, &c.scalar_format)) {
      } else if (key == "rot" && (value == "hadamard" || value == "none")) {
        c.rotation = value == "none" ? KVC_ROTATION_NONE : KVC_ROTATION_HADAMARD;
      } else if (key == "seed" && !value.empty()) {
        char* end = nullptr;
        errno = 0;
        c.seed = std::strtoull(value.c_str(), &end, 0);
        if (errno != 0 || *end != '\0' || value[0] == '-') {
          return bad("seed must be an unsigned 64-bit number");
        }
      } else {
        return bad("unknown option '" + option +
                   "' (options: nc, norm=f16|bf16|f32, rot=hadamard|none, seed=N)");
      }
    }
  }
  if (c.method == KVC_METHOD_RAW && colon != std::string::npos) {
    return bad("raw takes no options");
  }
  KVC_RETURN_IF_ERROR(ValidateTensorConfig(c, "method '" + text + "'"));
  *out = c;
  return OkStatus();
}

std::string FormatMethodString(const kvc_tensor_config& c) {
  if (c.method == KVC_METHOD_RAW) {
    return std::string("raw-") + DtypeName(c.scalar_format);
  }
  std::string s = c.method == KVC_METHOD_TQ_MSE ? "tq-mse-b" : "tq-prod-b";
  s += std::to_string(c.bits);
  std::vector<std::string> options;
  if (c.scalar_format != KVC_DTYPE_F16) {
    options.push_back(std::string("norm=") + DtypeName(c.scalar_format));
  }
  if (c.flags & KVC_CONFIG_NORM_CORRECTION) options.push_back("nc");
  if (c.rotation == KVC_ROTATION_NONE) options.push_back("rot=none");
  if (c.seed != kDefaultSeed) {
    options.push_back(StrFormat("seed=0x%llx",
                                static_cast<unsigned long long>(c.seed)));
  }
  for (size_t i = 0; i < options.size(); ++i) {
    s += (i == 0 ? ":" : ",") + options[i];
  }
  return s;
}

bool SameTensorConfig(const kvc_tensor_config& a, const kvc_tensor_config& b) {
  return a.method == b.method && a.bits == b.bits &&
         a.scalar_format == b.scalar_format && a.flags == b.flags &&
         a.rotation == b.rotation && a.seed == b.seed;
}

}  // namespace kvc
