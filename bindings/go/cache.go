package kvcodec

// Caches on disk and on the wire (format 1.1): a writer streaming a cache
// layer by layer into an io.Writer, random access to a finished cache through
// an io.ReaderAt, appended segments, and a sequential reader over an
// io.Reader that hands out each layer as soon as its blocks have arrived.
//
// The library does its I/O through callbacks into Go (cache_export.go). Its
// opaque pointer is a runtime/cgo.Handle of the Go I/O state, so C never
// holds a Go pointer; Go memory still reaches C only as direct call
// arguments. A callback's error is kept and joined to the library's
// diagnostic; a panic in a callback is recovered there (it must not unwind
// through C) and raised again once the C call has returned.

/*
#include <stdlib.h>
#include <string.h>
#include <kvcodec/kvcodec.h>

extern int kvcgoWrite(uintptr_t handle, void* data, size_t size);
extern int kvcgoSync(uintptr_t handle);
extern int kvcgoReadAt(uintptr_t handle, uint64_t offset, void* data, size_t size);
extern int64_t kvcgoRead(uintptr_t handle, void* data, size_t size);

// The C API's callback types, over the exported Go functions.
static int kvcgo_write_cb(void* opaque, const void* data, size_t size) {
  return kvcgoWrite((uintptr_t)opaque, (void*)data, size);
}
static int kvcgo_sync_cb(void* opaque) { return kvcgoSync((uintptr_t)opaque); }
static int kvcgo_read_at_cb(void* opaque, uint64_t offset, void* data, size_t size) {
  return kvcgoReadAt((uintptr_t)opaque, offset, data, size);
}
static int64_t kvcgo_read_cb(void* opaque, void* data, size_t size) {
  return kvcgoRead((uintptr_t)opaque, data, size);
}

static kvc_tensor kvcgo_tensor3(void* data, uint32_t dtype, const uint64_t* shape,
                                const int64_t* strides) {
  kvc_tensor t;
  memset(&t, 0, sizeof(t));
  t.data = data;
  t.dtype = dtype;
  t.ndim = 3;
  memcpy(t.shape, shape, 3 * sizeof(uint64_t));
  memcpy(t.strides, strides, 3 * sizeof(int64_t));
  return t;
}

// Writer options with the callbacks filled in (model_name: C memory).
static kvc_writer_options kvcgo_writer_options(uint32_t threads, uint32_t block_tokens,
                                               int32_t zstd_level, uint32_t appendable,
                                               const char* model_name,
                                               uint64_t model_config_hash) {
  kvc_writer_options o;
  kvc_writer_options_init(&o);
  o.threads = threads;
  o.block_tokens = block_tokens;
  o.zstd_level = zstd_level;
  o.appendable = appendable;
  o.model_name = model_name;
  o.model_config_hash = model_config_hash;
  o.sync = kvcgo_sync_cb;
  return o;
}

static kvc_status kvcgo_writer_create(const kvc_config* config, const kvc_cache_desc* desc,
                                      const kvc_writer_options* options, uintptr_t handle,
                                      kvc_writer** out, kvc_diagnostics* diag) {
  return kvc_writer_create(config, desc, options, kvcgo_write_cb, (void*)handle, out, diag);
}

static kvc_status kvcgo_cache_append(const kvc_cache* cache, uint32_t new_tokens,
                                     const kvc_writer_options* options, uintptr_t handle,
                                     kvc_writer** out, kvc_diagnostics* diag) {
  return kvc_cache_append(cache, new_tokens, options, kvcgo_write_cb, (void*)handle, out, diag);
}

static kvc_status kvcgo_writer_add_layer(kvc_writer* writer, void* keys, uint32_t keys_dtype,
                                         const uint64_t* keys_shape,
                                         const int64_t* keys_strides, void* values,
                                         uint32_t values_dtype, const uint64_t* values_shape,
                                         const int64_t* values_strides, kvc_diagnostics* diag) {
  kvc_tensor k = kvcgo_tensor3(keys, keys_dtype, keys_shape, keys_strides);
  kvc_tensor v = kvcgo_tensor3(values, values_dtype, values_shape, values_strides);
  return kvc_writer_add_layer(writer, &k, &v, diag);
}

static kvc_open_options kvcgo_open_options(uint32_t allow_model_mismatch,
                                           const char* expect_model_name,
                                           uint64_t expect_model_config_hash) {
  kvc_open_options o;
  kvc_open_options_init(&o);
  o.allow_model_mismatch = allow_model_mismatch;
  o.expect_model_name = expect_model_name;
  o.expect_model_config_hash = expect_model_config_hash;
  return o;
}

static kvc_status kvcgo_cache_open(uintptr_t handle, uint64_t size,
                                   const kvc_open_options* options, kvc_cache** out,
                                   kvc_diagnostics* diag) {
  return kvc_cache_open(kvcgo_read_at_cb, (void*)handle, size, options, out, diag);
}

static kvc_status kvcgo_cache_read(kvc_cache* cache, uint32_t layer, int kind,
                                   uint32_t head_start, uint32_t head_count,
                                   uint32_t token_start, uint32_t token_count, void* data,
                                   uint32_t dtype, const uint64_t* shape,
                                   const int64_t* strides, kvc_diagnostics* diag) {
  kvc_tensor t = kvcgo_tensor3(data, dtype, shape, strides);
  return kvc_cache_read(cache, layer, (kvc_kind)kind, head_start, head_count, token_start,
                        token_count, &t, diag);
}

static kvc_status kvcgo_reader_create(uintptr_t handle, const kvc_open_options* options,
                                      kvc_reader** out, kvc_diagnostics* diag) {
  return kvc_reader_create(kvcgo_read_cb, (void*)handle, options, out, diag);
}

// keys or values may be NULL: that half is skipped (and still checked).
static kvc_status kvcgo_reader_read(kvc_reader* reader, void* keys, uint32_t keys_dtype,
                                    const uint64_t* keys_shape, const int64_t* keys_strides,
                                    void* values, uint32_t values_dtype,
                                    const uint64_t* values_shape,
                                    const int64_t* values_strides, kvc_diagnostics* diag) {
  kvc_tensor k = kvcgo_tensor3(keys, keys_dtype, keys_shape, keys_strides);
  kvc_tensor v = kvcgo_tensor3(values, values_dtype, values_shape, values_strides);
  return kvc_reader_read(reader, keys ? &k : NULL, values ? &v : NULL, diag);
}
*/
import "C"

import (
	"fmt"
	"io"
	"runtime"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// ioState is what the callbacks reach through their handle: the Go I/O
// object, its first error and a recovered panic.
type ioState struct {
	writer   io.Writer
	readerAt io.ReaderAt
	reader   io.Reader
	err      error
	panicked bool
	panicVal interface{}
}

// call runs a callback's work, turning a panic into `failed`.
func (s *ioState) call(failed int, work func() int) (result int) {
	defer func() {
		if p := recover(); p != nil {
			if !s.panicked {
				s.panicked, s.panicVal = true, p
			}
			result = failed
		}
	}()
	return work()
}

// fail keeps the first error: err == nil gives ok, else failed.
func (s *ioState) fail(err error, ok, failed int) int {
	if err == nil {
		return ok
	}
	if s.err == nil {
		s.err = err
	}
	return failed
}

// check is the result of a C call that may have run callbacks.
func (s *ioState) check(status C.kvc_status, diag *C.kvc_diagnostics) error {
	if s.panicked {
		s.panicked = false
		panic(s.panicVal)
	}
	ioErr := s.err
	s.err = nil
	err := check(status, diag)
	if e, ok := err.(*Error); ok && ioErr != nil {
		e.Message = fmt.Sprintf("%s: %v", e.Message, ioErr)
	}
	return err
}

func cString(text string) *C.char {
	if text == "" {
		return nil
	}
	return C.CString(text)
}

// Hash64 is XXH64 (seed 0) of data: a model identity's config hash, e.g. of
// its config.json.
func Hash64(data []byte) uint64 {
	return uint64(C.kvc_hash64(bytesPointer(data), C.size_t(len(data))))
}

// ---------------------------------------------------------------------------
// Writing

// CacheDesc describes the cache to write; the dtype recorded is that of the
// first layer's keys.
type CacheDesc struct {
	NumLayers, NumKVHeads, NumTokens, HeadDim int
	RopeLayout                                RopeLayout
	PositionOffset                            uint32
	RopeBase                                  float32
}

// WriterOptions are a cache writer's options; DefaultWriterOptions gives the
// library's defaults.
type WriterOptions struct {
	Threads     uint32 // 0: one per core
	BlockTokens uint32 // tokens per block (default 4096); 0: one block
	// 0: the config's (Config.ZstdLevel; none when appending); -1: none;
	// 1..19: zstd per block where it saves 1/64 or more.
	ZstdLevel int32
	// Later segments may be appended (default). false without zstd gives
	// a stream every format-1.0 decoder reads.
	Appendable      bool
	ModelName       string // "": none; up to 255 bytes
	ModelConfigHash uint64 // Hash64 of the model's config; 0: none
}

// DefaultWriterOptions are the library's defaults.
func DefaultWriterOptions() WriterOptions {
	var o C.kvc_writer_options
	C.kvc_writer_options_init(&o)
	return WriterOptions{Threads: uint32(o.threads), BlockTokens: uint32(o.block_tokens),
		ZstdLevel: int32(o.zstd_level), Appendable: o.appendable != 0}
}

// CacheWriter writes a cache one layer at a time, then its block index. If
// the io.Writer has a Sync() error method (an *os.File), it is called
// before and after the index is committed. Not for concurrent use.
type CacheWriter struct {
	p      *C.kvc_writer
	state  *ioState
	handle cgo.Handle
}

func startWriter(options WriterOptions, w io.Writer,
	create func(*C.kvc_writer_options, C.uintptr_t, **C.kvc_writer, *C.kvc_diagnostics) C.kvc_status,
) (*CacheWriter, error) {
	if w == nil {
		return nil, invalid("writer is nil")
	}
	name := cString(options.ModelName)
	defer C.free(unsafe.Pointer(name))
	appendable := C.uint32_t(0)
	if options.Appendable {
		appendable = 1
	}
	o := C.kvcgo_writer_options(C.uint32_t(options.Threads), C.uint32_t(options.BlockTokens),
		C.int32_t(options.ZstdLevel), appendable, name, C.uint64_t(options.ModelConfigHash))
	state := &ioState{writer: w}
	handle := cgo.NewHandle(state)
	var p *C.kvc_writer
	var diag C.kvc_diagnostics
	if err := state.check(create(&o, C.uintptr_t(handle), &p, &diag), &diag); err != nil {
		handle.Delete()
		return nil, err
	}
	cw := &CacheWriter{p: p, state: state, handle: handle}
	runtime.SetFinalizer(cw, (*CacheWriter).Close)
	return cw, nil
}

// NewCacheWriter starts a cache; its header and layer configs are written at once.
func NewCacheWriter(config *Config, desc CacheDesc, options WriterOptions, w io.Writer) (*CacheWriter, error) {
	p, err := config.handle()
	if err != nil {
		return nil, err
	}
	var d C.kvc_cache_desc
	C.kvc_cache_desc_init(&d)
	extents := []int{desc.NumLayers, desc.NumKVHeads, desc.HeadDim, desc.NumTokens}
	fields := []*C.uint32_t{&d.num_layers, &d.num_kv_heads, &d.head_dim, &d.num_tokens}
	for i, field := range fields {
		if *field, err = u32(extents[i], "cache extent"); err != nil {
			return nil, err
		}
	}
	d.rope_layout = C.uint32_t(desc.RopeLayout)
	d.position_offset = C.uint32_t(desc.PositionOffset)
	d.rope_base = C.float(desc.RopeBase)
	cw, err := startWriter(options, w, func(o *C.kvc_writer_options, h C.uintptr_t,
		out **C.kvc_writer, diag *C.kvc_diagnostics) C.kvc_status {
		return C.kvcgo_writer_create(p, &d, o, h, out, diag)
	})
	runtime.KeepAlive(config)
	return cw, err
}

func (w *CacheWriter) writer() (*C.kvc_writer, error) {
	if w == nil || w.p == nil {
		return nil, invalid("cache writer is nil or closed")
	}
	return w.p, nil
}

// AddLayer writes the next layer (0, 1, ... in order): keys and values
// [heads, tokens, head_dim], tokens being this segment's. The dtypes may
// differ; the first layer's keys set the recorded dtype.
func AddLayer[K Element, V Element](w *CacheWriter, keys Tensor[K], values Tensor[V]) error {
	p, err := w.writer()
	if err != nil {
		return err
	}
	k, err := keys.view(3, "keys")
	if err != nil {
		return err
	}
	v, err := values.view(3, "values")
	if err != nil {
		return err
	}
	var diag C.kvc_diagnostics
	status := C.kvcgo_writer_add_layer(p, k.data, k.dtype, &k.shape[0], &k.strides[0], v.data,
		v.dtype, &v.shape[0], &v.strides[0], &diag)
	return w.state.check(status, &diag)
}

// AddLayer writes the next layer of float32 keys and values.
func (w *CacheWriter) AddLayer(keys, values Tensor[float32]) error {
	return AddLayer(w, keys, values)
}

// Finish writes the index and the End section once every layer was added;
// it returns the bytes of the whole stream. The writer stays open until Close.
func (w *CacheWriter) Finish() (uint64, error) {
	p, err := w.writer()
	if err != nil {
		return 0, err
	}
	var size C.uint64_t
	var diag C.kvc_diagnostics
	err = w.state.check(C.kvc_writer_finish(p, &size, &diag), &diag)
	return uint64(size), err
}

// Close frees the writer (an unfinished cache stays incomplete); idempotent.
func (w *CacheWriter) Close() {
	if w == nil || w.p == nil {
		return
	}
	C.kvc_writer_destroy(w.p)
	w.p = nil
	w.handle.Delete()
	runtime.SetFinalizer(w, nil)
}

// ---------------------------------------------------------------------------
// Random access

// OpenOptions name the model a cache must belong to (the zero value checks nothing).
type OpenOptions struct {
	AllowModelMismatch    bool
	ExpectModelName       string // "": not checked
	ExpectModelConfigHash uint64 // 0: not checked
}

func (o OpenOptions) call(run func(*C.kvc_open_options) C.kvc_status) C.kvc_status {
	name := cString(o.ExpectModelName)
	defer C.free(unsafe.Pointer(name))
	allow := C.uint32_t(0)
	if o.AllowModelMismatch {
		allow = 1
	}
	c := C.kvcgo_open_options(allow, name, C.uint64_t(o.ExpectModelConfigHash))
	return run(&c)
}

// CacheInfo is a cache's header, index and model identity.
type CacheInfo struct {
	Features        uint32     // Required_Features of the header
	Stream          StreamInfo // NumTokens: the whole cache's
	Segments        int        // 1 + appended segments
	Blocks          int
	Size            uint64 // bytes of the complete cache
	IgnoredBytes    uint64 // bytes after it: an interrupted append
	HasModel        bool
	ModelName       string
	ModelConfigHash uint64
}

// BlockEntry is where one block lies.
type BlockEntry struct {
	Layer                  int
	Kind                   Kind
	TokenStart, TokenCount int
	Offset, Size           uint64 // of its section, from the start of the stream
}

// Cache is random access to a finished cache. Blocks are read, and their
// checksums checked, only when asked for. Its methods may run concurrently
// (reads take turns).
type Cache struct {
	mu     sync.Mutex
	p      *C.kvc_cache
	state  *ioState
	handle cgo.Handle
}

// OpenCache opens a cache of size bytes read through r, from its header,
// layer configs and final index (a stream without index is walked once).
func OpenCache(r io.ReaderAt, size int64, options OpenOptions) (*Cache, error) {
	if r == nil || size < 0 {
		return nil, invalid("OpenCache needs a reader and a size >= 0")
	}
	state := &ioState{readerAt: r}
	handle := cgo.NewHandle(state)
	var p *C.kvc_cache
	var diag C.kvc_diagnostics
	status := options.call(func(o *C.kvc_open_options) C.kvc_status {
		return C.kvcgo_cache_open(C.uintptr_t(handle), C.uint64_t(size), o, &p, &diag)
	})
	if err := state.check(status, &diag); err != nil {
		handle.Delete()
		return nil, err
	}
	c := &Cache{p: p, state: state, handle: handle}
	runtime.SetFinalizer(c, (*Cache).Close)
	return c, nil
}

func (c *Cache) lock() (*C.kvc_cache, error) {
	c.mu.Lock()
	if c.p == nil {
		c.mu.Unlock()
		return nil, invalid("cache is closed")
	}
	return c.p, nil
}

func streamInfoOf(info *C.kvc_stream_info) StreamInfo {
	return StreamInfo{
		FormatMajor: int(info.format_major), FormatMinor: int(info.format_minor),
		NumLayers: int(info.num_layers), NumKVHeads: int(info.num_kv_heads),
		NumTokens: int(info.num_tokens), HeadDim: int(info.head_dim), DType: DType(info.dtype),
		RopeLayout: RopeLayout(info.rope_layout), PositionOffset: uint32(info.position_offset),
		RopeBase: float32(info.rope_base),
	}
}

// Info describes the cache.
func (c *Cache) Info() (CacheInfo, error) {
	p, err := c.lock()
	if err != nil {
		return CacheInfo{}, err
	}
	defer c.mu.Unlock()
	var info C.kvc_cache_info
	C.kvc_cache_info_init(&info)
	var diag C.kvc_diagnostics
	if err := check(C.kvc_cache_get_info(p, &info, &diag), &diag); err != nil {
		return CacheInfo{}, err
	}
	return CacheInfo{
		Features: uint32(info.features), Stream: streamInfoOf(&info.stream),
		Segments: int(info.segments), Blocks: int(info.blocks), Size: uint64(info.size),
		IgnoredBytes: uint64(info.ignored_bytes), HasModel: info.has_model != 0,
		ModelName: C.GoString(&info.model_name[0]), ModelConfigHash: uint64(info.model_config_hash),
	}, nil
}

// LayerConfig gives the keys and values tensor configs of one layer.
func (c *Cache) LayerConfig(layer int) (keys, values TensorConfig, err error) {
	p, err := c.lock()
	if err != nil {
		return keys, values, err
	}
	defer c.mu.Unlock()
	keys, values = newTensorConfig(), newTensorConfig()
	l, err := u32(layer, "layer")
	if err != nil {
		return keys, values, err
	}
	var diag C.kvc_diagnostics
	err = check(C.kvc_cache_layer_config(p, l, &keys.c, &values.c, &diag), &diag)
	return keys, values, err
}

// Block says where block index (0 .. Info().Blocks-1, stream order) lies.
func (c *Cache) Block(index int) (BlockEntry, error) {
	p, err := c.lock()
	if err != nil {
		return BlockEntry{}, err
	}
	defer c.mu.Unlock()
	i, err := u32(index, "block index")
	if err != nil {
		return BlockEntry{}, err
	}
	var e C.kvc_block_entry
	C.kvc_block_entry_init(&e)
	var diag C.kvc_diagnostics
	if err := check(C.kvc_cache_block(p, i, &e, &diag), &diag); err != nil {
		return BlockEntry{}, err
	}
	return BlockEntry{Layer: int(e.layer), Kind: Kind(e.kind), TokenStart: int(e.token_start),
		TokenCount: int(e.token_count), Offset: uint64(e.offset), Size: uint64(e.size)}, nil
}

// CacheReadInto decodes heads [headStart, +out.Shape[0]) x tokens
// [tokenStart, +out.Shape[1]) of one layer's keys or values into out
// [heads, tokens, head_dim], reading only the blocks that hold them.
func CacheReadInto[T Element](c *Cache, layer int, kind Kind, headStart, tokenStart int, out Tensor[T]) error {
	t, err := out.view(3, "out")
	if err != nil {
		return err
	}
	if t.data == nil {
		return invalid("out has no elements")
	}
	args := [4]C.uint32_t{}
	for i, v := range []int{layer, headStart, tokenStart} {
		if args[i], err = u32(v, "layer, head or token"); err != nil {
			return err
		}
	}
	p, err := c.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	var diag C.kvc_diagnostics
	status := C.kvcgo_cache_read(p, args[0], C.int(kind), args[1], C.uint32_t(t.shape[0]), args[2],
		C.uint32_t(t.shape[1]), t.data, t.dtype, &t.shape[0], &t.strides[0], &diag)
	return c.state.check(status, &diag)
}

// Read decodes heads [headStart, headStart+headCount) x tokens
// [tokenStart, tokenStart+tokenCount) of one layer's keys or values into a
// new float32 tensor [headCount, tokenCount, head_dim].
func (c *Cache) Read(layer int, kind Kind, headStart, headCount, tokenStart, tokenCount int) (Tensor[float32], error) {
	info, err := c.Info()
	if err != nil {
		return Tensor[float32]{}, err
	}
	if headCount <= 0 || tokenCount <= 0 {
		return Tensor[float32]{}, invalid("read %d heads x %d tokens: both must be > 0", headCount, tokenCount)
	}
	out := NewTensor(make([]float32, headCount*tokenCount*info.Stream.HeadDim),
		headCount, tokenCount, info.Stream.HeadDim)
	if err := CacheReadInto(c, layer, kind, headStart, tokenStart, out); err != nil {
		return Tensor[float32]{}, err
	}
	return out, nil
}

// Append starts a writer for newTokens more tokens per layer, continuing the
// cache: w must write at byte Info().Size of the same file (truncating what
// follows). Until it finishes, the cache reads as before.
func (c *Cache) Append(newTokens int, options WriterOptions, w io.Writer) (*CacheWriter, error) {
	n, err := u32(newTokens, "new tokens")
	if err != nil {
		return nil, err
	}
	p, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	return startWriter(options, w, func(o *C.kvc_writer_options, h C.uintptr_t,
		out **C.kvc_writer, diag *C.kvc_diagnostics) C.kvc_status {
		return C.kvcgo_cache_append(p, n, o, h, out, diag)
	})
}

// Close frees the cache; idempotent.
func (c *Cache) Close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return
	}
	C.kvc_cache_close(c.p)
	c.p = nil
	c.handle.Delete()
	runtime.SetFinalizer(c, nil)
}

// ---------------------------------------------------------------------------
// Sequential reading

// LayerRun is one layer's tokens of one segment, as the stream delivers them.
type LayerRun struct {
	Layer                  int
	TokenStart, TokenCount int
	Segment                int // 0 for the first
}

// StreamReader reads a cache in stream order with memory bounded by one
// block: every layer of the first segment, then every layer of each
// appended one. Not for concurrent use.
type StreamReader struct {
	p      *C.kvc_reader
	state  *ioState
	handle cgo.Handle
	info   StreamInfo
	run    *LayerRun
}

// NewStreamReader reads the header and the layer configs from r.
func NewStreamReader(r io.Reader, options OpenOptions) (*StreamReader, error) {
	if r == nil {
		return nil, invalid("reader is nil")
	}
	state := &ioState{reader: r}
	handle := cgo.NewHandle(state)
	var p *C.kvc_reader
	var diag C.kvc_diagnostics
	status := options.call(func(o *C.kvc_open_options) C.kvc_status {
		return C.kvcgo_reader_create(C.uintptr_t(handle), o, &p, &diag)
	})
	if err := state.check(status, &diag); err != nil {
		handle.Delete()
		return nil, err
	}
	s := &StreamReader{p: p, state: state, handle: handle}
	runtime.SetFinalizer(s, (*StreamReader).Close)
	var info C.kvc_stream_info
	C.kvc_stream_info_init(&info)
	if err := check(C.kvc_reader_get_info(p, &info, &diag), &diag); err != nil {
		s.Close()
		return nil, err
	}
	s.info = streamInfoOf(&info)
	return s, nil
}

// Info is the header; NumTokens is the first segment's.
func (s *StreamReader) Info() StreamInfo { return s.info }

// Next gives the next run; ok is false once the stream is complete.
func (s *StreamReader) Next() (run LayerRun, ok bool, err error) {
	s.run = nil
	if s.p == nil {
		return run, false, invalid("stream reader is closed")
	}
	var r C.kvc_layer_run
	C.kvc_layer_run_init(&r)
	var diag C.kvc_diagnostics
	if err := s.state.check(C.kvc_reader_next(s.p, &r, &diag), &diag); err != nil {
		return run, false, err
	}
	if r.end != 0 {
		return run, false, nil
	}
	run = LayerRun{Layer: int(r.layer), TokenStart: int(r.token_start),
		TokenCount: int(r.token_count), Segment: int(r.segment)}
	s.run = &run
	return run, true, nil
}

// StreamReadInto decodes the current run into keys and values
// [heads, run.TokenCount, head_dim]; either may be nil to skip it (its blocks
// are still checked).
func StreamReadInto[K Element, V Element](s *StreamReader, keys *Tensor[K], values *Tensor[V]) error {
	if s.p == nil {
		return invalid("stream reader is closed")
	}
	var k, v cTensor
	var err error
	if keys != nil {
		if k, err = keys.view(3, "keys"); err != nil {
			return err
		}
	}
	if values != nil {
		if v, err = values.view(3, "values"); err != nil {
			return err
		}
	}
	if keys != nil && k.data == nil || values != nil && v.data == nil {
		return invalid("an output has no elements")
	}
	var diag C.kvc_diagnostics
	status := C.kvcgo_reader_read(s.p, k.data, k.dtype, &k.shape[0], &k.strides[0], v.data,
		v.dtype, &v.shape[0], &v.strides[0], &diag)
	return s.state.check(status, &diag)
}

// Read decodes the current run into new float32 keys and values.
func (s *StreamReader) Read() (keys, values Tensor[float32], err error) {
	if s.run == nil {
		return keys, values, invalid("no current run: call Next first")
	}
	shape := []int{s.info.NumKVHeads, s.run.TokenCount, s.info.HeadDim}
	count := shape[0] * shape[1] * shape[2]
	keys = NewTensor(make([]float32, count), shape...)
	values = NewTensor(make([]float32, count), shape...)
	if err = StreamReadInto(s, &keys, &values); err != nil {
		return Tensor[float32]{}, Tensor[float32]{}, err
	}
	return keys, values, nil
}

// Close frees the reader; idempotent.
func (s *StreamReader) Close() {
	if s == nil || s.p == nil {
		return
	}
	C.kvc_reader_destroy(s.p)
	s.p = nil
	s.handle.Delete()
	runtime.SetFinalizer(s, nil)
}
