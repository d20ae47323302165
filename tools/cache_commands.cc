// kvc pack / unpack / cat / append / verify: whole caches as files and
// streams (kvc_writer, kvc_cache, kvc_reader of the C API). Every command
// holds at most one layer of the cache in memory beyond its input file.
#include "tools/cache_commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kvcodec/kvcodec.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tools/cli.h"
#include "tools/error.h"
#include "tools/file_util.h"
#include "tools/safetensors.h"

namespace kvc::tools {
namespace {

// A one-line progress bar on stderr when it is a terminal.
class Progress {
 public:
  Progress(const char* what, uint64_t total)
      : what_(what), total_(total), on_(isatty(STDERR_FILENO) == 1) {}
  ~Progress() {
    if (on_ && shown_) std::fprintf(stderr, "\r%*s\r", 60, "");
  }
  void Step(uint64_t done, const char* unit) {
    if (!on_ || total_ == 0) return;
    const int width = 30, filled = static_cast<int>(width * done / total_);
    std::fprintf(stderr, "\r%s [%.*s%*s] %llu/%llu %s", what_, filled,
                 "==============================", width - filled, "",
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_),
                 unit);
    std::fflush(stderr);
    shown_ = true;
  }

 private:
  const char* what_;
  uint64_t total_;
  bool on_, shown_ = false;
};

// Callbacks over file descriptors. Errors are kept to be reported with the
// file's name (the library reports KVC_ERR_IO).
struct Fd {
  int fd = -1;
  std::string name;
  std::string error;
  bool close_on_exit = false;

  Fd() = default;
  Fd(Fd&& other) noexcept { *this = std::move(other); }
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd, other.fd);
    std::swap(name, other.name);
    std::swap(error, other.error);
    std::swap(close_on_exit, other.close_on_exit);
    return *this;
  }
  ~Fd() {
    if (close_on_exit && fd >= 0) ::close(fd);
  }
};

int WriteFd(void* opaque, const void* data, size_t size) {
  Fd* f = static_cast<Fd*>(opaque);
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(f->fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      f->error = std::strerror(errno);
      return 1;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

int SyncFd(void* opaque) {
  Fd* f = static_cast<Fd*>(opaque);
  if (::fdatasync(f->fd) == 0 || errno == EINVAL || errno == EROFS) return 0;  // pipes
  f->error = std::strerror(errno);
  return 1;
}

int64_t ReadFd(void* opaque, void* data, size_t size) {
  Fd* f = static_cast<Fd*>(opaque);
  for (;;) {
    const ssize_t n = ::read(f->fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) f->error = std::strerror(errno);
    return n;
  }
}

int ReadAtFd(void* opaque, uint64_t offset, void* data, size_t size) {
  Fd* f = static_cast<Fd*>(opaque);
  auto* p = static_cast<uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::pread(f->fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      f->error = n == 0 ? "unexpected end of file" : std::strerror(errno);
      return 1;
    }
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

// AtomicFile behind a write callback (exceptions stay on this side).
int WriteAtomic(void* opaque, const void* data, size_t size) {
  try {
    static_cast<AtomicFile*>(opaque)->Write(data, size);
    return 0;
  } catch (const Error&) {
    return 1;
  }
}

// Status check that names the file and adds a callback's own error.
void CheckIo(kvc_status status, const kvc_diagnostics& diag, const std::string& what,
             const Fd* fd) {
  if (status == KVC_ERR_IO && fd != nullptr && !fd->error.empty()) {
    throw Error(what + ": " + fd->error);
  }
  Check(status, diag, what);
}

Fd OpenRead(const std::string& path, uint64_t* size) {
  Fd f;
  f.name = path;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) throw Error(path + ": " + std::strerror(errno));
  f.close_on_exit = true;
  struct stat st;
  if (::fstat(f.fd, &st) != 0) throw Error(path + ": " + std::strerror(errno));
  *size = static_cast<uint64_t>(st.st_size);
  return f;
}

struct CacheCloser {
  void operator()(kvc_cache* c) const { kvc_cache_close(c); }
};
using CachePtr = std::unique_ptr<kvc_cache, CacheCloser>;
struct WriterCloser {
  void operator()(kvc_writer* w) const { kvc_writer_destroy(w); }
};
using WriterPtr = std::unique_ptr<kvc_writer, WriterCloser>;
struct ReaderCloser {
  void operator()(kvc_reader* r) const { kvc_reader_destroy(r); }
};
using ReaderPtr = std::unique_ptr<kvc_reader, ReaderCloser>;

CachePtr OpenCache(Fd* file, uint64_t size, kvc_cache_info* info) {
  kvc_cache* cache = nullptr;
  kvc_diagnostics diag = {};
  CheckIo(kvc_cache_open(ReadAtFd, file, size, nullptr, &cache, &diag), diag, file->name, file);
  CachePtr owned(cache);
  kvc_cache_info_init(info);
  Check(kvc_cache_get_info(cache, info, &diag), diag, file->name);
  return owned;
}

uint32_t OutputDtype(const Args& args, uint32_t source, const std::string& name) {
  if (!args.Has("--dtype")) {
    if (DtypeName(source) == nullptr) {
      throw Error(name + ": the stream records source dtype " + std::to_string(source) +
                  "; choose one with --dtype");
    }
    return source;
  }
  const std::string& d = args.Get("--dtype");
  if (d == "f32") return KVC_DTYPE_F32;
  if (d == "f16") return KVC_DTYPE_F16;
  if (d == "bf16") return KVC_DTYPE_BF16;
  args.Fail("--dtype must be f32, f16 or bf16");
}

// "a:b" -> [a, b); empty parts default to 0 and `limit`.
void ParseRange(const Args& args, const char* option, uint32_t limit, uint32_t* start,
                uint32_t* count) {
  *start = 0;
  *count = limit;
  if (!args.Has(option)) return;
  const std::string& text = args.Get(option);
  const size_t colon = text.find(':');
  auto number = [&](const std::string& s, uint64_t fallback) -> uint64_t {
    if (s.empty()) return fallback;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (*end != '\0' || s[0] == '-') args.Fail(std::string(option) + " must be A:B");
    return v;
  };
  if (colon == std::string::npos) args.Fail(std::string(option) + " must be A:B");
  const uint64_t a = number(text.substr(0, colon), 0);
  const uint64_t b = number(text.substr(colon + 1), limit);
  if (a >= b || b > limit) {
    args.Fail(std::string(option) + " " + text + " is empty or beyond " + std::to_string(limit));
  }
  *start = static_cast<uint32_t>(a);
  *count = static_cast<uint32_t>(b - a);
}

kvc_writer_options WriterOptions(const Args& args) {
  kvc_writer_options o;
  kvc_writer_options_init(&o);
  o.threads = static_cast<uint32_t>(args.GetUint("--threads", 0, 0, 4096));
  o.block_tokens = static_cast<uint32_t>(args.GetUint("--block-tokens", 4096, 0, UINT32_MAX));
  // --zstd 0: none; without --zstd, the config's (kv-3.25z's zstd 3, say).
  if (args.Has("--zstd")) {
    const int32_t level = static_cast<int32_t>(args.GetUint("--zstd", 0, 0, 19));
    o.zstd_level = level == 0 ? -1 : level;
  }
  return o;
}

// One layer of a loaded cache as a [heads, tokens, dim] tensor.
kvc_tensor LayerTensor(const Cache& cache, const std::vector<uint8_t>& data, uint32_t layer) {
  const kvc_cache_desc& d = cache.desc;
  const size_t bytes = cache.ElementsPerLayer() * DtypeSize(d.dtype);
  return MakeTensor(data.data() + layer * bytes, d.dtype, {d.num_kv_heads, d.num_tokens, d.head_dim});
}

}  // namespace

void PackCommand(const std::vector<std::string>& argv) {
  const Args args("pack", argv,
                  {{"-o", true}, {"--preset", true}, {"--config", true}, {"--threads", true},
                   {"--block-tokens", true}, {"--zstd", true}, {"--sealed", false},
                   {"--model-name", true}, {"--model-config", true}});
  const std::string& input = args.Positional("input .safetensors file");
  const std::string& output = args.Get("-o");
  const LoadedConfig config = LoadConfig(args);
  kvc_writer_options options = WriterOptions(args);
  options.appendable = args.Has("--sealed") ? 0 : 1;
  std::string model_name;
  if (args.Has("--model-name")) model_name = args.Get("--model-name");
  if (!model_name.empty()) options.model_name = model_name.c_str();
  if (args.Has("--model-config")) {
    const std::vector<uint8_t> bytes = ReadFile(args.Get("--model-config"));
    options.model_config_hash = kvc_hash64(bytes.data(), bytes.size());
  }
  const Cache cache = LoadCache(SafetensorsFile::Read(input));

  // To stdout (a pipe or socket) as it is produced, or to a file that
  // appears whole.
  std::unique_ptr<AtomicFile> file;
  Fd out;
  out.name = output == "-" ? "stdout" : output;
  kvc_write_fn write = WriteFd;
  void* sink = &out;
  if (output == "-") {
    out.fd = STDOUT_FILENO;
  } else {
    file = std::make_unique<AtomicFile>(output);
    write = WriteAtomic;
    sink = file.get();
  }
  kvc_writer* raw = nullptr;
  kvc_diagnostics diag = {};
  CheckIo(kvc_writer_create(config.config.get(), &cache.desc, &options, write, sink, &raw, &diag),
          diag, out.name, &out);
  WriterPtr writer(raw);
  Progress progress("pack", cache.desc.num_layers);
  for (uint32_t layer = 0; layer < cache.desc.num_layers; ++layer) {
    const kvc_tensor k = LayerTensor(cache, cache.keys, layer);
    const kvc_tensor v = LayerTensor(cache, cache.values, layer);
    CheckIo(kvc_writer_add_layer(writer.get(), &k, &v, &diag), diag,
            input + ": layer " + std::to_string(layer), &out);
    progress.Step(layer + 1, "layers");
  }
  uint64_t total = 0;
  CheckIo(kvc_writer_finish(writer.get(), &total, &diag), diag, out.name, &out);
  if (file) file->Commit();
  const kvc_cache_desc& d = cache.desc;
  std::fprintf(output == "-" ? stderr : stdout,
               "%s: %u layers, %u kv heads, %u tokens, head_dim %u: %llu bytes, %.4f bits per "
               "element\n",
               out.name.c_str(), d.num_layers, d.num_kv_heads, d.num_tokens, d.head_dim,
               static_cast<unsigned long long>(total),
               8.0 * static_cast<double>(total) /
                   (2.0 * d.num_layers * static_cast<double>(cache.ElementsPerLayer())));
}

void UnpackCommand(const std::vector<std::string>& argv) {
  const Args args("unpack", argv, {{"-o", true}, {"--dtype", true}});
  const std::string& input = args.Positional("input .kvc file, or - for stdin");
  const std::string& output = args.Get("-o");
  kvc_diagnostics diag = {};
  kvc_stream_info info;
  kvc_stream_info_init(&info);
  // A file is read by random access (every segment); stdin as a stream,
  // layer by layer while it arrives.
  CachePtr cache;
  ReaderPtr reader;
  uint64_t size = 0;
  Fd in;
  if (input == "-") {
    in.fd = STDIN_FILENO;
    in.name = "stdin";
    kvc_reader* r = nullptr;
    CheckIo(kvc_reader_create(ReadFd, &in, nullptr, &r, &diag), diag, in.name, &in);
    reader.reset(r);
    Check(kvc_reader_get_info(r, &info, &diag), diag, in.name);
  } else {
    in = OpenRead(input, &size);
    kvc_cache_info cache_info;
    cache = OpenCache(&in, size, &cache_info);
    info = cache_info.stream;
    if (cache_info.ignored_bytes > 0) {
      std::fprintf(stderr, "kvc: %s: ignoring %llu bytes after the cache (an interrupted append)\n",
                   input.c_str(), static_cast<unsigned long long>(cache_info.ignored_bytes));
    }
  }
  const uint32_t dtype = OutputDtype(args, info.dtype, in.name);
  const std::vector<uint64_t> shape = {info.num_kv_heads, info.num_tokens, info.head_dim};
  std::vector<SafetensorsTensorSpec> specs;
  for (uint32_t layer = 0; layer < info.num_layers; ++layer) {
    for (const char* kv : {"k", "v"}) specs.push_back({LayerTensorName(layer, kv), DtypeName(dtype), shape});
  }
  SafetensorsWriter out(output, CacheMetadata(info), specs);
  const size_t layer_bytes =
      size_t{info.num_kv_heads} * info.num_tokens * info.head_dim * DtypeSize(dtype);
  std::vector<uint8_t> keys(layer_bytes), values(layer_bytes);
  const kvc_tensor kt = MakeTensor(keys.data(), dtype, {shape[0], shape[1], shape[2]});
  const kvc_tensor vt = MakeTensor(values.data(), dtype, {shape[0], shape[1], shape[2]});
  Progress progress("unpack", info.num_layers);
  for (uint32_t layer = 0; layer < info.num_layers; ++layer) {
    const std::string what = in.name + ": layer " + std::to_string(layer);
    if (reader) {
      kvc_layer_run run;
      kvc_layer_run_init(&run);
      CheckIo(kvc_reader_next(reader.get(), &run, &diag), diag, what, &in);
      CheckIo(kvc_reader_read(reader.get(), &kt, &vt, &diag), diag, what, &in);
    } else {
      CheckIo(kvc_cache_read(cache.get(), layer, KVC_KIND_KEYS, 0, info.num_kv_heads, 0,
                             info.num_tokens, &kt, &diag), diag, what, &in);
      CheckIo(kvc_cache_read(cache.get(), layer, KVC_KIND_VALUES, 0, info.num_kv_heads, 0,
                             info.num_tokens, &vt, &diag), diag, what, &in);
    }
    out.Write(keys.data(), keys.size());
    out.Write(values.data(), values.size());
    progress.Step(layer + 1, "layers");
  }
  if (reader) {
    kvc_layer_run run;
    kvc_layer_run_init(&run);
    CheckIo(kvc_reader_next(reader.get(), &run, &diag), diag, in.name, &in);
    if (!run.end) {
      throw Error(in.name + ": the cache continues with appended segments, which a stream "
                  "cannot place before they arrive: unpack it from a file");
    }
  }
  out.Commit();
  std::printf("%s: %u layers, %u kv heads, %u tokens, head_dim %u, %s\n", output.c_str(),
              info.num_layers, info.num_kv_heads, info.num_tokens, info.head_dim,
              DtypeName(dtype));
}

void CatCommand(const std::vector<std::string>& argv) {
  const Args args("cat", argv,
                  {{"-o", true}, {"--layer", true}, {"--kv", true}, {"--heads", true},
                   {"--tokens", true}, {"--dtype", true}});
  const std::string& input = args.Positional("input .kvc file");
  const std::string& output = args.Get("-o");
  const std::string& kv = args.Get("--kv");
  if (kv != "k" && kv != "v") args.Fail("--kv must be k or v");
  uint64_t size = 0;
  Fd in = OpenRead(input, &size);
  kvc_cache_info info;
  CachePtr cache = OpenCache(&in, size, &info);
  const kvc_stream_info& s = info.stream;
  const uint32_t layer =
      static_cast<uint32_t>(args.GetUint("--layer", 0, 0, s.num_layers - 1));
  if (!args.Has("--layer")) args.Fail("--layer is required");
  uint32_t h0, hc, t0, tc;
  ParseRange(args, "--heads", s.num_kv_heads, &h0, &hc);
  ParseRange(args, "--tokens", s.num_tokens, &t0, &tc);
  const uint32_t dtype = OutputDtype(args, s.dtype, input);
  std::vector<uint8_t> data(size_t{hc} * tc * s.head_dim * DtypeSize(dtype));
  const kvc_tensor out = MakeTensor(data.data(), dtype, {hc, tc, s.head_dim});
  kvc_diagnostics diag = {};
  CheckIo(kvc_cache_read(cache.get(), layer, kv == "k" ? KVC_KIND_KEYS : KVC_KIND_VALUES, h0, hc,
                         t0, tc, &out, &diag),
          diag, input, &in);
  WriteSafetensors(output, CacheMetadata(s),
                   {{LayerTensorName(layer, kv), DtypeName(dtype), {hc, tc, s.head_dim},
                     data.data(), data.size()}});
  std::printf("%s: layer %u %s heads %u..%u tokens %u..%u\n", output.c_str(), layer,
              kv == "k" ? "K" : "V", h0, h0 + hc - 1, t0, t0 + tc - 1);
}

void AppendCommand(const std::vector<std::string>& argv) {
  const Args args("append", argv,
                  {{"--threads", true}, {"--block-tokens", true}, {"--zstd", true}});
  if (args.positional().size() != 2) args.Fail("usage: kvc append FILE.kvc NEW.safetensors");
  const std::string& path = args.positional()[0];
  const std::string& input = args.positional()[1];
  const Cache more = LoadCache(SafetensorsFile::Read(input));
  Fd file;
  file.name = path;
  file.fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (file.fd < 0) throw Error(path + ": " + std::strerror(errno));
  file.close_on_exit = true;
  struct stat st;
  if (::fstat(file.fd, &st) != 0) throw Error(path + ": " + std::strerror(errno));
  kvc_cache_info info;
  CachePtr cache = OpenCache(&file, static_cast<uint64_t>(st.st_size), &info);
  const kvc_stream_info& s = info.stream;
  if (more.desc.num_layers != s.num_layers || more.desc.num_kv_heads != s.num_kv_heads ||
      more.desc.head_dim != s.head_dim) {
    throw Error(input + ": " + std::to_string(more.desc.num_layers) + " layers x " +
                std::to_string(more.desc.num_kv_heads) + " heads x head_dim " +
                std::to_string(more.desc.head_dim) + " do not fit " + path);
  }
  if (info.ignored_bytes > 0) {
    std::fprintf(stderr, "kvc: %s: dropping %llu bytes of an interrupted append\n", path.c_str(),
                 static_cast<unsigned long long>(info.ignored_bytes));
  }
  // The new segment goes where the complete cache ends; until its End is
  // written (after a sync), readers see the cache as it was.
  if (::ftruncate(file.fd, static_cast<off_t>(info.size)) != 0 ||
      ::lseek(file.fd, static_cast<off_t>(info.size), SEEK_SET) < 0) {
    throw Error(path + ": " + std::strerror(errno));
  }
  kvc_writer_options options = WriterOptions(args);
  options.sync = SyncFd;
  kvc_writer* raw = nullptr;
  kvc_diagnostics diag = {};
  CheckIo(kvc_cache_append(cache.get(), more.desc.num_tokens, &options, WriteFd, &file, &raw,
                           &diag),
          diag, path, &file);
  WriterPtr writer(raw);
  Progress progress("append", s.num_layers);
  for (uint32_t layer = 0; layer < s.num_layers; ++layer) {
    const kvc_tensor k = LayerTensor(more, more.keys, layer);
    const kvc_tensor v = LayerTensor(more, more.values, layer);
    CheckIo(kvc_writer_add_layer(writer.get(), &k, &v, &diag), diag,
            input + ": layer " + std::to_string(layer), &file);
    progress.Step(layer + 1, "layers");
  }
  uint64_t total = 0;
  CheckIo(kvc_writer_finish(writer.get(), &total, &diag), diag, path, &file);
  std::printf("%s: %u + %u tokens, %u segments, %llu bytes\n", path.c_str(), s.num_tokens,
              more.desc.num_tokens, info.segments + 1, static_cast<unsigned long long>(total));
}

void VerifyCommand(const std::vector<std::string>& argv) {
  const Args args("verify", argv, {});
  const std::string& input = args.Positional("input .kvc file");
  uint64_t size = 0;
  Fd file = OpenRead(input, &size);
  int damaged = 0;
  auto report = [&](const std::string& what) {
    std::printf("%s: %s\n", input.c_str(), what.c_str());
    ++damaged;
  };
  // 1. Every block through the index: each damaged one is named.
  kvc_cache* raw = nullptr;
  kvc_diagnostics diag = {};
  kvc_cache_info info;
  kvc_cache_info_init(&info);
  const kvc_status opened = kvc_cache_open(ReadAtFd, &file, size, nullptr, &raw, &diag);
  CachePtr cache(raw);
  if (opened != KVC_OK) {
    report(std::string("cannot open: ") + kvc_status_string(opened) + ": " + diag.message);
  } else {
    Check(kvc_cache_get_info(raw, &info, &diag), diag, input);
    if (info.ignored_bytes > 0) {
      report("interrupted append: " + std::to_string(info.ignored_bytes) +
             " bytes after the last complete segment (ends at byte " + std::to_string(info.size) +
             "); kvc append drops them");
    }
    const kvc_stream_info& s = info.stream;
    Progress progress("verify", info.blocks);
    std::vector<uint8_t> rows;
    for (uint32_t i = 0; i < info.blocks; ++i) {
      kvc_block_entry e;
      kvc_block_entry_init(&e);
      Check(kvc_cache_block(raw, i, &e, &diag), diag, input);
      rows.resize(size_t{s.num_kv_heads} * e.token_count * s.head_dim * 4);
      const kvc_tensor out =
          MakeTensor(rows.data(), KVC_DTYPE_F32, {s.num_kv_heads, e.token_count, s.head_dim});
      const kvc_status status = kvc_cache_read(raw, e.layer, static_cast<kvc_kind>(e.kind), 0,
                                               s.num_kv_heads, e.token_start, e.token_count,
                                               &out, &diag);
      if (status != KVC_OK) {
        report("block " + std::to_string(i) + " (layer " + std::to_string(e.layer) +
               (e.kind ? " V" : " K") + " tokens " + std::to_string(e.token_start) + ".." +
               std::to_string(e.token_start + e.token_count - 1) + ", bytes " +
               std::to_string(e.offset) + ".." + std::to_string(e.offset + e.size - 1) +
               "): " + kvc_status_string(status) + ": " + diag.message);
      }
      progress.Step(i + 1, "blocks");
    }
  }
  // 2. The whole structure in order: section counts, index, token coverage.
  if (damaged == 0) {
    Fd stream = OpenRead(input, &size);
    kvc_reader* r = nullptr;
    kvc_status status = kvc_reader_create(ReadFd, &stream, nullptr, &r, &diag);
    ReaderPtr reader(r);
    while (status == KVC_OK) {
      kvc_layer_run run;
      kvc_layer_run_init(&run);
      status = kvc_reader_next(r, &run, &diag);
      if (status != KVC_OK || run.end) break;
      status = kvc_reader_read(r, nullptr, nullptr, &diag);
    }
    if (status != KVC_OK) report(std::string(kvc_status_string(status)) + ": " + diag.message);
  }
  if (damaged > 0) {
    throw Error(input + ": damaged (" + std::to_string(damaged) + " problem" +
                (damaged > 1 ? "s" : "") + " listed above)");
  }
  std::printf("%s: ok: %u layers, %u kv heads, %u tokens, %u segments, %u blocks, every "
              "checksum matches\n",
              input.c_str(), info.stream.num_layers, info.stream.num_kv_heads,
              info.stream.num_tokens, info.segments, info.blocks);
}

}  // namespace kvc::tools
