// Package kvcodec compresses transformer KV caches through kvcodec's C API.
//
// Tensors are Go slices of float32, F16 or BF16 (bit containers) seen
// through Tensor: a shape and element strides, checked against the slice so
// that the library never reads or writes outside it. A block is
// [heads, tokens, head_dim]; a cache is [layers, heads, tokens, head_dim] for
// keys and for values.
//
// Calls pass Go memory to C only as direct arguments, for the duration of
// the call (small C helpers below build the C API's tensor structs on the C
// stack), so the cgo pointer rules hold without copies; C keeps no pointer
// after a call returns and results are Go slices. The C objects (Config's
// rule table; the cache writer, cache and stream reader of cache.go, whose
// callbacks reach Go through runtime/cgo handles) are freed by Close, or by
// the garbage collector.
//
// Every failure is an *Error carrying a Status and the library's one-line
// diagnostic; errors.Is(err, kvcodec.Checksum) tests the status.
package kvcodec

/*
#cgo pkg-config: kvcodec
#include <stdlib.h>
#include <string.h>
#include <kvcodec/kvcodec.h>

// Go may pass its memory to C only as direct call arguments, not inside
// structs, so these helpers assemble the tensors (on the C stack).
static kvc_tensor kvcgo_tensor(void* data, uint32_t dtype, uint32_t ndim,
                               const uint64_t* shape, const int64_t* strides) {
  kvc_tensor t;
  uint32_t i;
  memset(&t, 0, sizeof(t));
  t.data = data;
  t.dtype = dtype;
  t.ndim = ndim;
  for (i = 0; i < ndim; ++i) {
    t.shape[i] = shape[i];
    t.strides[i] = strides[i];
  }
  return t;
}

static kvc_status kvcgo_encode_block(const kvc_tensor_config* config, uint32_t layer,
                                     int kind, uint32_t head_start, uint32_t token_start,
                                     void* data, uint32_t dtype, const uint64_t* shape,
                                     const int64_t* strides, void* dst, size_t capacity,
                                     size_t* size, kvc_diagnostics* diag) {
  kvc_tensor t = kvcgo_tensor(data, dtype, 3, shape, strides);
  return kvc_encode_block(config, layer, (kvc_kind)kind, head_start, token_start, &t, dst,
                          capacity, size, diag);
}

static kvc_status kvcgo_decode_block(const void* src, size_t size, void* data,
                                     uint32_t dtype, const uint64_t* shape,
                                     const int64_t* strides, kvc_diagnostics* diag) {
  kvc_tensor t = kvcgo_tensor(data, dtype, 3, shape, strides);
  return kvc_decode_block(src, size, &t, diag);
}

static size_t kvcgo_stream_bound(const kvc_config* config, const kvc_cache_desc* desc,
                                 uint32_t threads, uint32_t block_tokens) {
  kvc_encode_options options;
  kvc_encode_options_init(&options);
  options.threads = threads;
  options.block_tokens = block_tokens;
  return kvc_stream_bound(config, desc, &options);
}

static kvc_status kvcgo_encode_stream(const kvc_config* config, const kvc_cache_desc* desc,
                                      void* keys, uint32_t keys_dtype,
                                      const uint64_t* keys_shape, const int64_t* keys_strides,
                                      void* values, uint32_t values_dtype,
                                      const uint64_t* values_shape,
                                      const int64_t* values_strides, uint32_t threads,
                                      uint32_t block_tokens, void* dst, size_t capacity,
                                      size_t* size, kvc_diagnostics* diag) {
  kvc_tensor k = kvcgo_tensor(keys, keys_dtype, 4, keys_shape, keys_strides);
  kvc_tensor v = kvcgo_tensor(values, values_dtype, 4, values_shape, values_strides);
  kvc_encode_options options;
  kvc_encode_options_init(&options);
  options.threads = threads;
  options.block_tokens = block_tokens;
  return kvc_encode_stream(config, desc, &k, &v, &options, dst, capacity, size, diag);
}

// keys or values may be NULL: that half is not decoded.
static kvc_status kvcgo_decode_stream(const void* src, size_t size, uint32_t threads,
                                      void* keys, uint32_t keys_dtype,
                                      const uint64_t* keys_shape, const int64_t* keys_strides,
                                      void* values, uint32_t values_dtype,
                                      const uint64_t* values_shape,
                                      const int64_t* values_strides, kvc_diagnostics* diag) {
  kvc_tensor k = kvcgo_tensor(keys, keys_dtype, 4, keys_shape, keys_strides);
  kvc_tensor v = kvcgo_tensor(values, values_dtype, 4, values_shape, values_strides);
  kvc_decode_options options;
  kvc_decode_options_init(&options);
  options.threads = threads;
  return kvc_decode_stream(src, size, &options, keys ? &k : NULL, values ? &v : NULL, diag);
}
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"
)

// ---------------------------------------------------------------------------
// Errors

// Status is a kvcodec status code other than success. It is an error itself,
// so that errors.Is(err, kvcodec.Truncated) works on an *Error.
type Status int

// The C API's status codes (kvc_status), pinned by the library.
const (
	InvalidArgument    Status = C.KVC_ERR_INVALID_ARGUMENT
	DstTooSmall        Status = C.KVC_ERR_DST_TOO_SMALL
	NotKvcodec         Status = C.KVC_ERR_NOT_KVCODEC
	UnsupportedVersion Status = C.KVC_ERR_UNSUPPORTED_VERSION
	UnsupportedFeature Status = C.KVC_ERR_UNSUPPORTED_FEATURE
	Truncated          Status = C.KVC_ERR_TRUNCATED
	Checksum           Status = C.KVC_ERR_CHECKSUM
	Corrupt            Status = C.KVC_ERR_CORRUPT
	ShapeMismatch      Status = C.KVC_ERR_SHAPE_MISMATCH
	InvalidValue       Status = C.KVC_ERR_INVALID_VALUE
	OutOfMemory        Status = C.KVC_ERR_OUT_OF_MEMORY
	Internal           Status = C.KVC_ERR_INTERNAL
	ModelMismatch      Status = C.KVC_ERR_MODEL_MISMATCH
	IO                 Status = C.KVC_ERR_IO
)

var statusNames = map[Status]string{
	InvalidArgument: "KVC_ERR_INVALID_ARGUMENT", DstTooSmall: "KVC_ERR_DST_TOO_SMALL",
	NotKvcodec: "KVC_ERR_NOT_KVCODEC", UnsupportedVersion: "KVC_ERR_UNSUPPORTED_VERSION",
	UnsupportedFeature: "KVC_ERR_UNSUPPORTED_FEATURE", Truncated: "KVC_ERR_TRUNCATED",
	Checksum: "KVC_ERR_CHECKSUM", Corrupt: "KVC_ERR_CORRUPT",
	ShapeMismatch: "KVC_ERR_SHAPE_MISMATCH", InvalidValue: "KVC_ERR_INVALID_VALUE",
	OutOfMemory: "KVC_ERR_OUT_OF_MEMORY", Internal: "KVC_ERR_INTERNAL",
	ModelMismatch: "KVC_ERR_MODEL_MISMATCH", IO: "KVC_ERR_IO",
}

// Name is the C name, such as "KVC_ERR_CHECKSUM".
func (s Status) Name() string {
	if name, ok := statusNames[s]; ok {
		return name
	}
	return fmt.Sprintf("KVC_STATUS_%d", int(s))
}

// Error is the library's short description ("checksum mismatch").
func (s Status) Error() string {
	return C.GoString(C.kvc_status_string(C.kvc_status(s)))
}

// Error is a failed kvcodec call.
type Error struct {
	Status  Status
	Message string // the library's one-line diagnostic; may be empty
}

func (e *Error) Error() string {
	text := e.Status.Error()
	if e.Message != "" {
		text += ": " + e.Message
	}
	return text + " (" + e.Status.Name() + ")"
}

// Unwrap gives the Status, for errors.Is.
func (e *Error) Unwrap() error { return e.Status }

func check(status C.kvc_status, diag *C.kvc_diagnostics) error {
	if status == C.KVC_OK {
		return nil
	}
	message := ""
	if diag != nil {
		message = C.GoString(&diag.message[0])
	}
	return &Error{Status: Status(status), Message: message}
}

func invalid(format string, args ...interface{}) error {
	return &Error{Status: InvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// u32 converts an extent or index for the C API, which takes uint32.
func u32(value int, what string) (C.uint32_t, error) {
	if value < 0 || uint64(value) > math.MaxUint32 {
		return 0, invalid("%s %d out of range", what, value)
	}
	return C.uint32_t(value), nil
}

// ---------------------------------------------------------------------------
// Library, presets

// Version is the library's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.kvc_version_string()) }

// SIMDTarget is the SIMD target the library dispatches to ("AVX2", ...).
func SIMDTarget() string { return C.GoString(C.kvc_simd_target()) }

// Preset is a built-in cache config.
type Preset struct {
	Name, Description string
}

// Presets lists the built-in presets in the library's order.
func Presets() []Preset {
	count := C.kvc_preset_count()
	presets := make([]Preset, 0, int(count))
	for i := C.uint32_t(0); i < count; i++ {
		presets = append(presets, Preset{
			Name:        C.GoString(C.kvc_preset_name(i)),
			Description: C.GoString(C.kvc_preset_description(i)),
		})
	}
	return presets
}

// ---------------------------------------------------------------------------
// Element types and tensors

// F16 is an IEEE half-precision value, as its bits.
type F16 uint16

// BF16 is a bfloat16 value, as its bits.
type BF16 uint16

// Float32 is the exact value.
func (h F16) Float32() float32 {
	sign := uint32(h&0x8000) << 16
	exponent := uint32(h>>10) & 0x1F
	mantissa := uint32(h) & 0x3FF
	switch exponent {
	case 0: // zero or subnormal: mantissa x 2^-24, exact in float32
		magnitude := float32(mantissa) / 16777216
		if sign != 0 {
			return -magnitude
		}
		return magnitude
	case 31:
		return math.Float32frombits(sign | 0x7F800000 | mantissa<<13)
	}
	return math.Float32frombits(sign | (exponent+112)<<23 | mantissa<<13)
}

// Float32 is the exact value.
func (b BF16) Float32() float32 { return math.Float32frombits(uint32(b) << 16) }

// Element is a tensor element type the C API reads and writes.
type Element interface {
	float32 | F16 | BF16
}

// DType names an element type.
type DType int

const (
	F32DType  DType = C.KVC_DTYPE_F32
	F16DType  DType = C.KVC_DTYPE_F16
	BF16DType DType = C.KVC_DTYPE_BF16
)

func dtypeOf[T Element]() DType {
	var zero T
	switch any(zero).(type) {
	case F16:
		return F16DType
	case BF16:
		return BF16DType
	}
	return F32DType
}

// Tensor views Data as a tensor: Shape outermost first; Strides in elements
// (nil: contiguous row-major), possibly negative; Offset is the index of the
// first element in Data.
type Tensor[T Element] struct {
	Data    []T
	Shape   []int
	Strides []int
	Offset  int
}

// NewTensor views data as a contiguous tensor of the given shape.
func NewTensor[T Element](data []T, shape ...int) Tensor[T] {
	return Tensor[T]{Data: data, Shape: shape}
}

// cTensor is a checked tensor in the C API's terms.
type cTensor struct {
	data    unsafe.Pointer
	dtype   C.uint32_t
	shape   [4]C.uint64_t
	strides [4]C.int64_t
}

// view checks that every element lies inside Data and returns the C view.
func (t *Tensor[T]) view(ndim int, what string) (cTensor, error) {
	var c cTensor
	if len(t.Shape) != ndim {
		return c, invalid("%s: expected %d dimensions, got shape %v", what, ndim, t.Shape)
	}
	strides := t.Strides
	if strides == nil {
		if t.Offset != 0 {
			return c, invalid("%s: an offset needs strides", what)
		}
		strides = make([]int, ndim)
		stride := 1
		for i := ndim - 1; i >= 0; i-- {
			strides[i] = stride
			stride *= t.Shape[i]
		}
	} else if len(strides) != ndim {
		return c, invalid("%s: %d strides for %d dimensions", what, len(strides), ndim)
	}
	outside := func() error {
		return invalid("%s: view (offset %d, shape %v, strides %v) reaches outside its %d elements",
			what, t.Offset, t.Shape, strides, len(t.Data))
	}
	// Every step is bounded by len(Data), so nothing below overflows.
	size := len(t.Data)
	count, low, high, allZero := 1, t.Offset, t.Offset, true
	if t.Offset < 0 || t.Offset > size {
		return c, outside()
	}
	for i := 0; i < ndim; i++ {
		n, s := t.Shape[i], strides[i]
		if n < 0 || uint64(n) > math.MaxUint32 {
			return c, invalid("%s: extent %d out of range", what, n)
		}
		if n > 0 && count > math.MaxInt/n {
			return c, invalid("%s: too many elements", what)
		}
		count *= n
		if n > 1 && s != 0 {
			if s > size || s < -size || n-1 > size/abs(s) {
				return c, outside()
			}
			if reach := (n - 1) * s; reach < 0 {
				low += reach
			} else {
				high += reach
			}
		}
		allZero = allZero && s == 0
		c.shape[i] = C.uint64_t(n)
		c.strides[i] = C.int64_t(s)
	}
	c.dtype = C.uint32_t(dtypeOf[T]())
	if count == 0 {
		return c, nil // nothing is read or written; the library names the empty extent
	}
	if low < 0 || high >= size {
		return c, outside()
	}
	if count > 1 && allZero { // the C API reads all-zero strides as "contiguous"
		return c, invalid("%s: all-zero strides mean a contiguous tensor in the C API", what)
	}
	c.data = unsafe.Pointer(&t.Data[t.Offset])
	return c, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func bytesPointer(data []byte) unsafe.Pointer {
	if len(data) == 0 {
		return nil
	}
	return unsafe.Pointer(&data[0])
}

// encodeInto runs an encoder into a buffer of bound bytes. A bound of 0 means
// invalid arguments: the call then runs with one byte so that the library
// names the problem.
func encodeInto(bound C.size_t, call func(dst unsafe.Pointer, capacity C.size_t, size *C.size_t,
	diag *C.kvc_diagnostics) C.kvc_status) ([]byte, error) {
	capacity := bound
	if capacity == 0 {
		capacity = 1
	}
	buffer := make([]byte, int(capacity))
	var size C.size_t
	var diag C.kvc_diagnostics
	if err := check(call(unsafe.Pointer(&buffer[0]), capacity, &size, &diag), &diag); err != nil {
		return nil, err
	}
	if bound == 0 {
		return nil, &Error{Status: Internal, Message: "bound was 0 for a valid input"}
	}
	return buffer[:int(size)], nil
}

// ---------------------------------------------------------------------------
// Configs

// Kind is K or V.
type Kind int

const (
	Keys   Kind = C.KVC_KIND_KEYS
	Values Kind = C.KVC_KIND_VALUES
)

// TensorConfig is the method and parameters for K or V of one layer, written
// as a method string such as "tq-mse-b4" or "tq-prod-b3:nc".
type TensorConfig struct {
	c C.kvc_tensor_config
}

func newTensorConfig() TensorConfig {
	var t TensorConfig
	C.kvc_tensor_config_init(&t.c)
	return t
}

// ParseTensorConfig parses a method string.
func ParseTensorConfig(text string) (TensorConfig, error) {
	t := newTensorConfig()
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	var diag C.kvc_diagnostics
	err := check(C.kvc_tensor_config_parse(ctext, &t.c, &diag), &diag)
	return t, err
}

// Text is the canonical method string; it fails for an invalid config.
func (t TensorConfig) Text() (string, error) {
	var length C.size_t
	status := C.kvc_tensor_config_format(&t.c, nil, 0, &length)
	if status != C.KVC_ERR_DST_TOO_SMALL {
		if err := check(status, nil); err != nil {
			return "", err
		}
	}
	buffer := make([]byte, int(length)+1)
	if err := check(C.kvc_tensor_config_format(&t.c, (*C.char)(unsafe.Pointer(&buffer[0])),
		C.size_t(len(buffer)), nil), nil); err != nil {
		return "", err
	}
	return string(buffer[:int(length)]), nil
}

func (t TensorConfig) String() string {
	text, err := t.Text()
	if err != nil {
		return "<invalid tensor config: " + err.Error() + ">"
	}
	return text
}

// Bits is the bits per coordinate (see kvc_tensor_config).
func (t TensorConfig) Bits() uint32 { return uint32(t.c.bits) }

// Seed seeds every random choice of the method.
func (t TensorConfig) Seed() uint64 { return uint64(t.c.seed) }

// WithSeed is a copy with another seed.
func (t TensorConfig) WithSeed(seed uint64) TensorConfig {
	t.c.seed = C.uint64_t(seed)
	return t
}

// WithBits is a copy with other bits (checked when used).
func (t TensorConfig) WithBits(bits uint32) TensorConfig {
	t.c.bits = C.uint32_t(bits)
	return t
}

// Config is a cache config: a rule table giving each layer its K and V
// TensorConfig. Its methods may run concurrently, except SetLayer, which
// must not run while the config is in use elsewhere.
type Config struct {
	p *C.kvc_config
}

func newConfig(p *C.kvc_config, status C.kvc_status, diag *C.kvc_diagnostics) (*Config, error) {
	if err := check(status, diag); err != nil {
		return nil, err
	}
	c := &Config{p: p}
	runtime.SetFinalizer(c, (*Config).Close)
	return c, nil
}

// PresetConfig is a built-in preset.
func PresetConfig(name string) (*Config, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var p *C.kvc_config
	var diag C.kvc_diagnostics
	status := C.kvc_config_from_preset(cname, &p, &diag)
	return newConfig(p, status, &diag)
}

// ParseConfig reads config text ("kvcodec-config 1", then rules).
func ParseConfig(text string) (*Config, error) {
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	var p *C.kvc_config
	var diag C.kvc_diagnostics
	status := C.kvc_config_parse(ctext, C.size_t(len(text)), &p, &diag)
	return newConfig(p, status, &diag)
}

func (c *Config) handle() (*C.kvc_config, error) {
	if c == nil || c.p == nil {
		return nil, invalid("config is nil or closed")
	}
	return c.p, nil
}

// Text is the config as config text.
func (c *Config) Text() (string, error) {
	p, err := c.handle()
	if err != nil {
		return "", err
	}
	var length C.size_t
	C.kvc_config_format(p, nil, 0, &length)
	buffer := make([]byte, int(length)+1)
	err = check(C.kvc_config_format(p, (*C.char)(unsafe.Pointer(&buffer[0])),
		C.size_t(len(buffer)), nil), nil)
	runtime.KeepAlive(c)
	if err != nil {
		return "", err
	}
	return string(buffer[:int(length)]), nil
}

// ZstdLevel is the zstd level (1..19) caches written with this config store
// their blocks with unless the writer's options choose (config text "zstd
// L"); 0: none. Single blocks are fixed-rate whatever it says.
func (c *Config) ZstdLevel() (int32, error) {
	p, err := c.handle()
	if err != nil {
		return 0, err
	}
	level := int32(C.kvc_config_zstd_level(p))
	runtime.KeepAlive(c)
	return level, nil
}

// SetLayer gives K or V of layer the method t, overriding the rules.
func (c *Config) SetLayer(layer uint32, kind Kind, t TensorConfig) error {
	p, err := c.handle()
	if err != nil {
		return err
	}
	err = check(C.kvc_config_set_layer(p, C.uint32_t(layer), C.kvc_kind(kind), &t.c), nil)
	runtime.KeepAlive(c)
	return err
}

// Layer is the TensorConfig of K or V of layer in a cache of numLayers
// layers (rules such as "last 2" depend on it).
func (c *Config) Layer(layer, numLayers uint32, kind Kind) (TensorConfig, error) {
	t := newTensorConfig()
	p, err := c.handle()
	if err != nil {
		return t, err
	}
	err = check(C.kvc_config_layer(p, C.uint32_t(layer), C.uint32_t(numLayers), C.kvc_kind(kind),
		&t.c), nil)
	runtime.KeepAlive(c)
	return t, err
}

// Close frees the C object; the config is unusable afterwards.
func (c *Config) Close() {
	if c != nil && c.p != nil {
		C.kvc_config_destroy(c.p)
		c.p = nil
		runtime.SetFinalizer(c, nil)
	}
}

// ---------------------------------------------------------------------------
// Blocks

// BlockPosition is where a block sits in its cache; the block records it.
type BlockPosition struct {
	Layer      uint32
	Kind       Kind
	HeadStart  uint32
	TokenStart uint32
}

// EncodeBlock encodes input ([heads, tokens, head_dim]) as a standalone block.
func EncodeBlock[T Element](method TensorConfig, input Tensor[T], at BlockPosition) ([]byte, error) {
	view, err := input.view(3, "input")
	if err != nil {
		return nil, err
	}
	var bound C.size_t
	h, errH := u32(input.Shape[0], "heads")
	t, errT := u32(input.Shape[1], "tokens")
	d, errD := u32(input.Shape[2], "head_dim")
	if errH == nil && errT == nil && errD == nil {
		bound = C.kvc_block_bound(&method.c, h, t, d)
	}
	return encodeInto(bound, func(dst unsafe.Pointer, capacity C.size_t, size *C.size_t,
		diag *C.kvc_diagnostics) C.kvc_status {
		return C.kvcgo_encode_block(&method.c, C.uint32_t(at.Layer), C.int(at.Kind),
			C.uint32_t(at.HeadStart), C.uint32_t(at.TokenStart), view.data, view.dtype,
			&view.shape[0], &view.strides[0], dst, capacity, size, diag)
	})
}

// BlockInfo is a block's header.
type BlockInfo struct {
	Position                       BlockPosition
	HeadCount, TokenCount, HeadDim int
	Method                         TensorConfig
}

// Shape is [HeadCount, TokenCount, HeadDim].
func (b BlockInfo) Shape() []int { return []int{b.HeadCount, b.TokenCount, b.HeadDim} }

// GetBlockInfo reads and checks a block's header.
func GetBlockInfo(data []byte) (BlockInfo, error) {
	var info C.kvc_block_info
	C.kvc_block_info_init(&info)
	method := newTensorConfig()
	var diag C.kvc_diagnostics
	err := check(C.kvc_get_block_info(bytesPointer(data), C.size_t(len(data)), &info, &method.c,
		&diag), &diag)
	return BlockInfo{
		Position: BlockPosition{Layer: uint32(info.layer), Kind: Kind(info.kind),
			HeadStart: uint32(info.head_start), TokenStart: uint32(info.token_start)},
		HeadCount:  int(info.head_count),
		TokenCount: int(info.token_count),
		HeadDim:    int(info.head_dim),
		Method:     method,
	}, err
}

// DecodeBlockInto decodes a block into out, a view of its shape.
func DecodeBlockInto[T Element](data []byte, out Tensor[T]) error {
	view, err := out.view(3, "out")
	if err != nil {
		return err
	}
	var diag C.kvc_diagnostics
	return check(C.kvcgo_decode_block(bytesPointer(data), C.size_t(len(data)), view.data,
		view.dtype, &view.shape[0], &view.strides[0], &diag), &diag)
}

// DecodeBlock decodes a block into a new contiguous tensor.
func DecodeBlock[T Element](data []byte) (Tensor[T], error) {
	info, err := GetBlockInfo(data)
	if err != nil {
		return Tensor[T]{}, err
	}
	out := NewTensor(make([]T, info.HeadCount*info.TokenCount*info.HeadDim), info.Shape()...)
	if err := DecodeBlockInto(data, out); err != nil {
		return Tensor[T]{}, err
	}
	return out, nil
}

// BlockScores computes the inner products of queries with the block's
// vectors in the codec (TurboQuant: in its rotated domain; tq-prod: its
// unbiased estimator). queries: [head_count, queriesPerHead, head_dim];
// the result: [head_count, queriesPerHead, token_count].
func BlockScores(data []byte, queries []float32, queriesPerHead int) ([]float32, error) {
	info, err := GetBlockInfo(data)
	if err != nil {
		return nil, err
	}
	if queriesPerHead <= 0 || len(queries) != info.HeadCount*queriesPerHead*info.HeadDim {
		return nil, invalid("queries must be [%d, %d, %d]: %d floats, not %d", info.HeadCount,
			queriesPerHead, info.HeadDim, info.HeadCount*queriesPerHead*info.HeadDim, len(queries))
	}
	perHead, err := u32(queriesPerHead, "queriesPerHead")
	if err != nil {
		return nil, err
	}
	scores := make([]float32, info.HeadCount*queriesPerHead*info.TokenCount)
	var diag C.kvc_diagnostics
	err = check(C.kvc_block_scores(bytesPointer(data), C.size_t(len(data)),
		(*C.float)(unsafe.Pointer(&queries[0])), perHead, (*C.float)(unsafe.Pointer(&scores[0])),
		C.size_t(len(scores)), &diag), &diag)
	if err != nil {
		return nil, err
	}
	return scores, nil
}

// ---------------------------------------------------------------------------
// Streams: whole caches

// RopeLayout is how the cache's RoPE pairs dimensions.
type RopeLayout int

const (
	RopeUnknown     RopeLayout = C.KVC_ROPE_UNKNOWN
	RopeSplitHalf   RopeLayout = C.KVC_ROPE_SPLIT_HALF
	RopeInterleaved RopeLayout = C.KVC_ROPE_INTERLEAVED
)

// StreamOptions are encode options and the cache's description.
type StreamOptions struct {
	Threads        uint32 // 0: one per core
	BlockTokens    uint32 // tokens per block; 0: all in one
	RopeLayout     RopeLayout
	PositionOffset uint32  // RoPE position of token 0
	RopeBase       float32 // RoPE theta; 0 if unknown
}

// EncodeStream encodes a whole cache: keys and values
// [layers, heads, tokens, head_dim].
func EncodeStream[K Element, V Element](config *Config, keys Tensor[K], values Tensor[V],
	options StreamOptions) ([]byte, error) {
	p, err := config.handle()
	if err != nil {
		return nil, err
	}
	k, err := keys.view(4, "keys")
	if err != nil {
		return nil, err
	}
	v, err := values.view(4, "values")
	if err != nil {
		return nil, err
	}
	var desc C.kvc_cache_desc
	C.kvc_cache_desc_init(&desc)
	fields := []*C.uint32_t{&desc.num_layers, &desc.num_kv_heads, &desc.num_tokens, &desc.head_dim}
	for i, field := range fields {
		if *field, err = u32(keys.Shape[i], "keys extent"); err != nil {
			return nil, err
		}
	}
	desc.dtype = k.dtype
	desc.rope_layout = C.uint32_t(options.RopeLayout)
	desc.position_offset = C.uint32_t(options.PositionOffset)
	desc.rope_base = C.float(options.RopeBase)
	threads, blockTokens := C.uint32_t(options.Threads), C.uint32_t(options.BlockTokens)
	bound := C.kvcgo_stream_bound(p, &desc, threads, blockTokens)
	data, err := encodeInto(bound, func(dst unsafe.Pointer, capacity C.size_t, size *C.size_t,
		diag *C.kvc_diagnostics) C.kvc_status {
		return C.kvcgo_encode_stream(p, &desc, k.data, k.dtype, &k.shape[0], &k.strides[0],
			v.data, v.dtype, &v.shape[0], &v.strides[0], threads, blockTokens, dst, capacity,
			size, diag)
	})
	runtime.KeepAlive(config)
	return data, err
}

// StreamInfo is a stream's header.
type StreamInfo struct {
	FormatMajor, FormatMinor                  int
	NumLayers, NumKVHeads, NumTokens, HeadDim int
	DType                                     DType // of the source cache, as recorded
	RopeLayout                                RopeLayout
	PositionOffset                            uint32
	RopeBase                                  float32
}

// Shape is [layers, heads, tokens, head_dim] of keys and of values.
func (s StreamInfo) Shape() []int {
	return []int{s.NumLayers, s.NumKVHeads, s.NumTokens, s.HeadDim}
}

// GetStreamInfo reads and checks a stream's header.
func GetStreamInfo(data []byte) (StreamInfo, error) {
	var info C.kvc_stream_info
	C.kvc_stream_info_init(&info)
	var diag C.kvc_diagnostics
	err := check(C.kvc_get_stream_info(bytesPointer(data), C.size_t(len(data)), &info, &diag),
		&diag)
	return StreamInfo{
		FormatMajor: int(info.format_major), FormatMinor: int(info.format_minor),
		NumLayers: int(info.num_layers), NumKVHeads: int(info.num_kv_heads),
		NumTokens: int(info.num_tokens), HeadDim: int(info.head_dim), DType: DType(info.dtype),
		RopeLayout: RopeLayout(info.rope_layout), PositionOffset: uint32(info.position_offset),
		RopeBase: float32(info.rope_base),
	}, err
}

// LayerInfo is one layer of a stream: its methods and the bytes its blocks take.
type LayerInfo struct {
	Keys, Values           TensorConfig
	KeysBytes, ValuesBytes uint64
}

// GetStreamLayer describes one layer of a stream (walking and checking it).
func GetStreamLayer(data []byte, layer uint32) (LayerInfo, error) {
	info := LayerInfo{Keys: newTensorConfig(), Values: newTensorConfig()}
	var keysBytes, valuesBytes C.uint64_t
	var diag C.kvc_diagnostics
	err := check(C.kvc_get_stream_layer(bytesPointer(data), C.size_t(len(data)),
		C.uint32_t(layer), &info.Keys.c, &info.Values.c, &keysBytes, &valuesBytes, &diag), &diag)
	info.KeysBytes, info.ValuesBytes = uint64(keysBytes), uint64(valuesBytes)
	return info, err
}

// DecodeStreamInto decodes a whole stream into views; either may be nil to
// skip it (its structure and checksums are still checked). threads: 0 for
// one per core.
func DecodeStreamInto[K Element, V Element](data []byte, keys *Tensor[K], values *Tensor[V],
	threads uint32) error {
	var k, v cTensor
	var err error
	if keys != nil {
		if k, err = keys.view(4, "keys"); err != nil {
			return err
		}
	}
	if values != nil {
		if v, err = values.view(4, "values"); err != nil {
			return err
		}
	}
	if keys != nil && k.data == nil || values != nil && v.data == nil {
		return invalid("an output has no elements")
	}
	var diag C.kvc_diagnostics
	return check(C.kvcgo_decode_stream(bytesPointer(data), C.size_t(len(data)),
		C.uint32_t(threads), k.data, k.dtype, &k.shape[0], &k.strides[0], v.data, v.dtype,
		&v.shape[0], &v.strides[0], &diag), &diag)
}

// DecodeStream decodes a whole stream into new contiguous keys and values.
func DecodeStream[T Element](data []byte, threads uint32) (keys, values Tensor[T], err error) {
	info, err := GetStreamInfo(data)
	if err != nil {
		return keys, values, err
	}
	count := info.NumLayers * info.NumKVHeads * info.NumTokens * info.HeadDim
	keys = NewTensor(make([]T, count), info.Shape()...)
	values = NewTensor(make([]T, count), info.Shape()...)
	if err = DecodeStreamInto(data, &keys, &values, threads); err != nil {
		return Tensor[T]{}, Tensor[T]{}, err
	}
	return keys, values, nil
}
