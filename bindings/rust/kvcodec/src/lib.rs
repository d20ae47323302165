//! kvcodec: compression of transformer KV caches, over kvcodec's C API.
//!
//! Tensors are slices of `f32`, [`F16`] or [`BF16`] (bit containers) seen
//! through [`TensorRef`] / [`TensorMut`]: a shape and element strides, checked
//! against the slice so that the library never reads or writes outside it.
//! A block is `[heads, tokens, head_dim]`; a cache is
//! `[layers, heads, tokens, head_dim]` for keys and for values.
//!
//! ```no_run
//! let keys = vec![0.5f32; 8 * 512 * 128];
//! let view = kvcodec::TensorRef::new(&keys, [8, 512, 128]).unwrap();
//! let method = kvcodec::TensorConfig::parse("tq-mse-b4").unwrap();
//! let block = kvcodec::encode_block(&method, &view, kvcodec::BlockPosition::default()).unwrap();
//! let decoded: kvcodec::Array<f32, 3> = kvcodec::decode_block(&block).unwrap();
//! ```
//!
//! Every failure is an [`Error`] carrying the library's [`Status`] and its
//! one-line diagnostic; arguments this crate checks itself (a view outside its
//! slice, a dimension too large for the C API) fail with
//! [`Status::InvalidArgument`].

use kvcodec_sys as sys;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_void};
use std::ptr::{self, NonNull};

pub mod cache;
pub use cache::{
    hash64, BlockEntry, CacheDesc, CacheFile, CacheInfo, CacheWriter, LayerRun, OpenOptions, StreamReader,
    WriterOptions,
};

// ---------------------------------------------------------------------------
// Errors

/// kvcodec's status codes (kvc_status), other than success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    InvalidArgument,
    DstTooSmall,
    NotKvcodec,
    UnsupportedVersion,
    UnsupportedFeature,
    Truncated,
    Checksum,
    Corrupt,
    ShapeMismatch,
    InvalidValue,
    OutOfMemory,
    Internal,
    ModelMismatch,
    Io,
    /// A status newer than this crate.
    Other(i32),
}

const STATUSES: [(Status, i32, &str); 14] = [
    (Status::InvalidArgument, sys::KVC_ERR_INVALID_ARGUMENT, "KVC_ERR_INVALID_ARGUMENT"),
    (Status::DstTooSmall, sys::KVC_ERR_DST_TOO_SMALL, "KVC_ERR_DST_TOO_SMALL"),
    (Status::NotKvcodec, sys::KVC_ERR_NOT_KVCODEC, "KVC_ERR_NOT_KVCODEC"),
    (Status::UnsupportedVersion, sys::KVC_ERR_UNSUPPORTED_VERSION, "KVC_ERR_UNSUPPORTED_VERSION"),
    (Status::UnsupportedFeature, sys::KVC_ERR_UNSUPPORTED_FEATURE, "KVC_ERR_UNSUPPORTED_FEATURE"),
    (Status::Truncated, sys::KVC_ERR_TRUNCATED, "KVC_ERR_TRUNCATED"),
    (Status::Checksum, sys::KVC_ERR_CHECKSUM, "KVC_ERR_CHECKSUM"),
    (Status::Corrupt, sys::KVC_ERR_CORRUPT, "KVC_ERR_CORRUPT"),
    (Status::ShapeMismatch, sys::KVC_ERR_SHAPE_MISMATCH, "KVC_ERR_SHAPE_MISMATCH"),
    (Status::InvalidValue, sys::KVC_ERR_INVALID_VALUE, "KVC_ERR_INVALID_VALUE"),
    (Status::OutOfMemory, sys::KVC_ERR_OUT_OF_MEMORY, "KVC_ERR_OUT_OF_MEMORY"),
    (Status::Internal, sys::KVC_ERR_INTERNAL, "KVC_ERR_INTERNAL"),
    (Status::ModelMismatch, sys::KVC_ERR_MODEL_MISMATCH, "KVC_ERR_MODEL_MISMATCH"),
    (Status::Io, sys::KVC_ERR_IO, "KVC_ERR_IO"),
];

impl Status {
    fn from_code(code: i32) -> Status {
        STATUSES.iter().find(|s| s.1 == code).map(|s| s.0).unwrap_or(Status::Other(code))
    }

    /// The C API's number for this status.
    pub fn code(self) -> i32 {
        match self {
            Status::Other(code) => code,
            s => STATUSES.iter().find(|e| e.0 == s).unwrap().1,
        }
    }

    /// The C name, such as "KVC_ERR_CHECKSUM".
    pub fn name(self) -> String {
        match self {
            Status::Other(code) => format!("KVC_STATUS_{}", code),
            s => STATUSES.iter().find(|e| e.0 == s).unwrap().2.to_string(),
        }
    }

    /// The library's short description ("checksum mismatch").
    pub fn description(self) -> String {
        // Static storage, never NULL.
        unsafe { CStr::from_ptr(sys::kvc_status_string(self.code())) }
            .to_string_lossy()
            .into_owned()
    }
}

/// A failed kvcodec call: its status and the library's diagnostic (may be
/// empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    fn invalid(message: impl Into<String>) -> Error {
        Error::new(Status::InvalidArgument, message)
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// The one-line diagnostic, naming the problem (may be empty).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status.description())?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        write!(f, " ({})", self.status.name())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn diagnostics() -> sys::kvc_diagnostics {
    sys::kvc_diagnostics { message: [0; 256] }
}

fn check(status: sys::kvc_status, diag: Option<&sys::kvc_diagnostics>) -> Result<()> {
    if status == sys::KVC_OK {
        return Ok(());
    }
    let message = match diag {
        // NUL-terminated within its 256 bytes (the library writes it so).
        Some(d) => unsafe { CStr::from_ptr(d.message.as_ptr()) }.to_string_lossy().into_owned(),
        None => String::new(),
    };
    Err(Error::new(Status::from_code(status), message))
}

fn static_str(p: *const c_char) -> &'static str {
    if p.is_null() {
        return "";
    }
    // The library's static strings are ASCII.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("")
}

fn c_string(text: &str, what: &str) -> Result<CString> {
    CString::new(text).map_err(|_| Error::invalid(format!("{} contains a NUL byte", what)))
}

fn to_u32(value: usize, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::invalid(format!("{} {} exceeds 2^32-1", what, value)))
}

// ---------------------------------------------------------------------------
// Library, presets

/// The library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    static_str(unsafe { sys::kvc_version_string() })
}

/// The SIMD target the library dispatches to ("AVX2", "SCALAR", ...).
pub fn simd_target() -> &'static str {
    static_str(unsafe { sys::kvc_simd_target() })
}

/// A built-in preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
}

/// The built-in presets, in the library's order.
pub fn presets() -> Vec<Preset> {
    let count = unsafe { sys::kvc_preset_count() };
    (0..count)
        .map(|i| Preset {
            name: static_str(unsafe { sys::kvc_preset_name(i) }),
            description: static_str(unsafe { sys::kvc_preset_description(i) }),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Element types and tensor views

/// The element types of tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    fn code(self) -> u32 {
        match self {
            DType::F32 => sys::KVC_DTYPE_F32,
            DType::F16 => sys::KVC_DTYPE_F16,
            DType::BF16 => sys::KVC_DTYPE_BF16,
        }
    }

    fn from_code(code: u32) -> Option<DType> {
        [DType::F32, DType::F16, DType::BF16].iter().copied().find(|d| d.code() == code)
    }
}

/// IEEE half precision, as its bits.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct F16(pub u16);

/// bfloat16, as its bits.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BF16(pub u16);

impl F16 {
    /// The exact f32 value.
    pub fn to_f32(self) -> f32 {
        let h = self.0 as u32;
        let sign = (h & 0x8000) << 16;
        let exponent = (h >> 10) & 0x1F;
        let mantissa = h & 0x3FF;
        match exponent {
            0 => {
                // Zero or subnormal: mantissa x 2^-24, exact in f32.
                let magnitude = mantissa as f32 / 16_777_216.0;
                if sign != 0 {
                    -magnitude
                } else {
                    magnitude
                }
            }
            31 => f32::from_bits(sign | 0x7F80_0000 | (mantissa << 13)),
            _ => f32::from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13)),
        }
    }
}

impl BF16 {
    /// The exact f32 value.
    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for super::F16 {}
    impl Sealed for super::BF16 {}
}

/// A tensor element type the C API reads and writes.
pub trait Element: Copy + Default + sealed::Sealed {
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for F16 {
    const DTYPE: DType = DType::F16;
}
impl Element for BF16 {
    const DTYPE: DType = DType::BF16;
}

/// Checks that every element of a strided view lies in a slice of `len`
/// elements; returns the number of elements viewed.
fn check_view<const N: usize>(
    len: usize,
    offset: usize,
    shape: &[usize; N],
    strides: &[isize; N],
) -> Result<()> {
    if N == 0 || N > 4 {
        return Err(Error::invalid("tensors have 1 to 4 dimensions"));
    }
    let outside = || {
        Error::invalid(format!(
            "view (offset {}, shape {:?}, strides {:?}) reaches outside its {} elements",
            offset, shape, strides, len
        ))
    };
    // i128 holds any extent times any stride; the sum of four is checked.
    let mut count: usize = 1;
    let (mut low, mut high) = (offset as i128, offset as i128);
    for i in 0..N {
        count = count.checked_mul(shape[i]).ok_or_else(|| Error::invalid("tensor too large"))?;
        let reach = (shape[i].saturating_sub(1)) as i128 * strides[i] as i128;
        let bound = if reach < 0 { &mut low } else { &mut high };
        *bound = bound.checked_add(reach).ok_or_else(outside)?;
    }
    if count == 0 {
        return Ok(()); // nothing is read or written; the library names the empty extent
    }
    if low < 0 || high >= len as i128 {
        return Err(outside());
    }
    // The C API reads all-zero strides as "contiguous".
    if count > 1 && strides.iter().all(|&s| s == 0) {
        return Err(Error::invalid("all-zero strides mean a contiguous tensor in the C API"));
    }
    Ok(())
}

fn contiguous_strides<const N: usize>(shape: &[usize; N]) -> [isize; N] {
    let mut strides = [0isize; N];
    let mut stride = 1isize;
    for i in (0..N).rev() {
        strides[i] = stride;
        stride = stride.saturating_mul(shape[i] as isize);
    }
    strides
}

fn raw_tensor<const N: usize>(
    data: *mut c_void,
    dtype: DType,
    shape: &[usize; N],
    strides: &[isize; N],
) -> sys::kvc_tensor {
    let mut t = sys::kvc_tensor {
        data,
        dtype: dtype.code(),
        ndim: N as u32,
        shape: [0; 4],
        strides: [0; 4],
    };
    for i in 0..N {
        t.shape[i] = shape[i] as u64;
        t.strides[i] = strides[i] as i64;
    }
    t
}

/// A read-only view of a slice as an N-dimensional tensor; strides count
/// elements and may be negative (then `offset` is where element 0 lies).
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a, T: Element, const N: usize> {
    data: &'a [T],
    offset: usize,
    shape: [usize; N],
    strides: [isize; N],
}

impl<'a, T: Element, const N: usize> TensorRef<'a, T, N> {
    /// A contiguous row-major tensor filling the slice exactly.
    pub fn new(data: &'a [T], shape: [usize; N]) -> Result<Self> {
        let count = shape.iter().try_fold(1usize, |n, &e| n.checked_mul(e));
        if count != Some(data.len()) {
            return Err(Error::invalid(format!(
                "shape {:?} does not hold the slice's {} elements",
                shape,
                data.len()
            )));
        }
        Self::strided(data, 0, shape, contiguous_strides(&shape))
    }

    /// Any strided view inside the slice.
    pub fn strided(
        data: &'a [T],
        offset: usize,
        shape: [usize; N],
        strides: [isize; N],
    ) -> Result<Self> {
        check_view(data.len(), offset, &shape, &strides)?;
        Ok(TensorRef { data, offset, shape, strides })
    }

    pub fn shape(&self) -> [usize; N] {
        self.shape
    }

    fn raw(&self) -> sys::kvc_tensor {
        // In bounds: checked when the view was made (offset < len unless the
        // view is empty, and then the library reads nothing).
        let base = self.data.as_ptr().wrapping_add(self.offset);
        raw_tensor(base as *mut c_void, T::DTYPE, &self.shape, &self.strides)
    }
}

/// A writable view of a slice as an N-dimensional tensor.
#[derive(Debug)]
pub struct TensorMut<'a, T: Element, const N: usize> {
    data: &'a mut [T],
    offset: usize,
    shape: [usize; N],
    strides: [isize; N],
}

impl<'a, T: Element, const N: usize> TensorMut<'a, T, N> {
    /// A contiguous row-major tensor filling the slice exactly.
    pub fn new(data: &'a mut [T], shape: [usize; N]) -> Result<Self> {
        let count = shape.iter().try_fold(1usize, |n, &e| n.checked_mul(e));
        if count != Some(data.len()) {
            return Err(Error::invalid(format!(
                "shape {:?} does not hold the slice's {} elements",
                shape,
                data.len()
            )));
        }
        let strides = contiguous_strides(&shape);
        Self::strided(data, 0, shape, strides)
    }

    /// Any strided view inside the slice.
    pub fn strided(
        data: &'a mut [T],
        offset: usize,
        shape: [usize; N],
        strides: [isize; N],
    ) -> Result<Self> {
        check_view(data.len(), offset, &shape, &strides)?;
        Ok(TensorMut { data, offset, shape, strides })
    }

    pub fn shape(&self) -> [usize; N] {
        self.shape
    }

    fn raw(&mut self) -> sys::kvc_tensor {
        let base = self.data.as_mut_ptr().wrapping_add(self.offset);
        raw_tensor(base as *mut c_void, T::DTYPE, &self.shape, &self.strides)
    }
}

/// A decoded tensor: contiguous row-major data and its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array<T, const N: usize> {
    pub data: Vec<T>,
    pub shape: [usize; N],
}

// ---------------------------------------------------------------------------
// Configs

/// K or V.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Keys,
    Values,
}

impl Kind {
    fn code(self) -> sys::kvc_kind {
        match self {
            Kind::Keys => sys::KVC_KIND_KEYS,
            Kind::Values => sys::KVC_KIND_VALUES,
        }
    }
}

/// The method and parameters for K or V of one layer (kvc_tensor_config),
/// written as a method string such as "tq-mse-b4" or "tq-prod-b3:nc".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorConfig(sys::kvc_tensor_config);

impl TensorConfig {
    fn initialized() -> sys::kvc_tensor_config {
        let mut c = sys::kvc_tensor_config::default();
        unsafe { sys::kvc_tensor_config_init(&mut c) };
        c
    }

    /// Parses a method string.
    pub fn parse(text: &str) -> Result<TensorConfig> {
        let text = c_string(text, "method string")?;
        let mut c = Self::initialized();
        let mut diag = diagnostics();
        check(unsafe { sys::kvc_tensor_config_parse(text.as_ptr(), &mut c, &mut diag) }, Some(&diag))?;
        Ok(TensorConfig(c))
    }

    /// The canonical method string; fails for an invalid config.
    pub fn text(&self) -> Result<String> {
        let mut length = 0usize;
        let status =
            unsafe { sys::kvc_tensor_config_format(&self.0, ptr::null_mut(), 0, &mut length) };
        if status != sys::KVC_ERR_DST_TOO_SMALL {
            check(status, None)?;
        }
        let mut buffer = vec![0u8; length + 1];
        check(
            unsafe {
                sys::kvc_tensor_config_format(
                    &self.0,
                    buffer.as_mut_ptr() as *mut c_char,
                    buffer.len(),
                    ptr::null_mut(),
                )
            },
            None,
        )?;
        buffer.truncate(length);
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    /// The C struct, for reading every field.
    pub fn raw(&self) -> &sys::kvc_tensor_config {
        &self.0
    }

    /// The C struct, for changing fields (seed, bits, ...); the library
    /// checks them when the config is used or formatted.
    pub fn raw_mut(&mut self) -> &mut sys::kvc_tensor_config {
        &mut self.0
    }
}

impl std::str::FromStr for TensorConfig {
    type Err = Error;
    fn from_str(text: &str) -> Result<TensorConfig> {
        TensorConfig::parse(text)
    }
}

impl fmt::Display for TensorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Ok(text) => f.write_str(&text),
            Err(e) => write!(f, "<invalid tensor config: {}>", e),
        }
    }
}

/// A cache config (kvc_config): a rule table giving each layer its K and V
/// TensorConfig. Reading it from several threads is safe (the C API's
/// functions taking a const config are thread-safe); changing it needs
/// `&mut`.
pub struct Config {
    raw: NonNull<sys::kvc_config>,
}

// The C object has no thread affinity; the C API only reads it through
// `const kvc_config*` (thread-safe) and set_layer takes &mut self.
unsafe impl Send for Config {}
unsafe impl Sync for Config {}

impl Config {
    fn from_raw(status: sys::kvc_status, raw: *mut sys::kvc_config, diag: &sys::kvc_diagnostics)
        -> Result<Config> {
        check(status, Some(diag))?;
        NonNull::new(raw)
            .map(|raw| Config { raw })
            .ok_or_else(|| Error::new(Status::Internal, "the library returned no config"))
    }

    /// A built-in preset.
    pub fn preset(name: &str) -> Result<Config> {
        let name = c_string(name, "preset name")?;
        let mut raw = ptr::null_mut();
        let mut diag = diagnostics();
        let status = unsafe { sys::kvc_config_from_preset(name.as_ptr(), &mut raw, &mut diag) };
        Config::from_raw(status, raw, &diag)
    }

    /// Config text ("kvcodec-config 1", then rules).
    pub fn parse(text: &str) -> Result<Config> {
        let mut raw = ptr::null_mut();
        let mut diag = diagnostics();
        let status = unsafe {
            sys::kvc_config_parse(text.as_ptr() as *const c_char, text.len(), &mut raw, &mut diag)
        };
        Config::from_raw(status, raw, &diag)
    }

    /// The config as config text.
    pub fn text(&self) -> String {
        let mut length = 0usize;
        unsafe { sys::kvc_config_format(self.raw.as_ptr(), ptr::null_mut(), 0, &mut length) };
        let mut buffer = vec![0u8; length + 1];
        let status = unsafe {
            sys::kvc_config_format(
                self.raw.as_ptr(),
                buffer.as_mut_ptr() as *mut c_char,
                buffer.len(),
                ptr::null_mut(),
            )
        };
        // A valid config and a buffer of the length the library asked for.
        assert_eq!(status, sys::KVC_OK, "kvc_config_format");
        buffer.truncate(length);
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// The zstd level (1..19) caches written with this config store their
    /// blocks with unless the writer's options choose (config text `zstd
    /// L`); 0: none. Single blocks are fixed-rate whatever it says.
    pub fn zstd_level(&self) -> i32 {
        unsafe { sys::kvc_config_zstd_level(self.raw.as_ptr()) }
    }

    /// Gives layer `layer`'s K or V the method `tensor`, overriding the rules.
    pub fn set_layer(&mut self, layer: u32, kind: Kind, tensor: &TensorConfig) -> Result<()> {
        check(
            unsafe { sys::kvc_config_set_layer(self.raw.as_ptr(), layer, kind.code(), &tensor.0) },
            None,
        )
    }

    /// The TensorConfig of K or V of `layer` in a cache of `num_layers`
    /// layers (rules such as "last 2" depend on it).
    pub fn layer(&self, layer: u32, num_layers: u32, kind: Kind) -> Result<TensorConfig> {
        let mut c = TensorConfig::initialized();
        check(
            unsafe {
                sys::kvc_config_layer(self.raw.as_ptr(), layer, num_layers, kind.code(), &mut c)
            },
            None,
        )?;
        Ok(TensorConfig(c))
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        unsafe { sys::kvc_config_destroy(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config").field("text", &self.text()).finish()
    }
}

/// Runs an encoder into a buffer of `bound` bytes and returns what it wrote.
/// A bound of 0 means invalid arguments: the call then runs with one byte so
/// that the library names the problem.
fn encode_into(
    bound: usize,
    call: impl FnOnce(*mut c_void, usize, &mut usize, &mut sys::kvc_diagnostics) -> sys::kvc_status,
) -> Result<Vec<u8>> {
    let mut buffer = vec![0u8; bound.max(1)];
    let mut size = 0usize;
    let mut diag = diagnostics();
    let capacity = buffer.len();
    check(call(buffer.as_mut_ptr() as *mut c_void, capacity, &mut size, &mut diag), Some(&diag))?;
    if bound == 0 {
        return Err(Error::new(Status::Internal, "bound was 0 for a valid input"));
    }
    buffer.truncate(size);
    Ok(buffer)
}

// ---------------------------------------------------------------------------
// Blocks

/// Where a block sits in its cache; recorded in the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockPosition {
    pub layer: u32,
    pub kind: Kind,
    pub head_start: u32,
    pub token_start: u32,
}

impl Default for BlockPosition {
    fn default() -> Self {
        BlockPosition { layer: 0, kind: Kind::Keys, head_start: 0, token_start: 0 }
    }
}

/// Encodes `input` ([heads, tokens, head_dim]) as a standalone block.
pub fn encode_block<T: Element>(
    method: &TensorConfig,
    input: &TensorRef<'_, T, 3>,
    position: BlockPosition,
) -> Result<Vec<u8>> {
    let [heads, tokens, dim] = input.shape;
    let bound = match (to_u32(heads, "heads"), to_u32(tokens, "tokens"), to_u32(dim, "head_dim")) {
        (Ok(h), Ok(t), Ok(d)) => unsafe { sys::kvc_block_bound(&method.0, h, t, d) },
        _ => 0, // the library names the extent that does not fit
    };
    let tensor = input.raw();
    encode_into(bound, |dst, capacity, size, diag| unsafe {
        sys::kvc_encode_block(
            &method.0,
            position.layer,
            position.kind.code(),
            position.head_start,
            position.token_start,
            &tensor,
            dst,
            capacity,
            size,
            diag,
        )
    })
}

/// A block's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub position: BlockPosition,
    pub head_count: usize,
    pub token_count: usize,
    pub head_dim: usize,
    pub method: TensorConfig,
}

impl BlockInfo {
    pub fn shape(&self) -> [usize; 3] {
        [self.head_count, self.token_count, self.head_dim]
    }
}

/// Reads and checks a block's header.
pub fn block_info(data: &[u8]) -> Result<BlockInfo> {
    let mut info = sys::kvc_block_info::default();
    unsafe { sys::kvc_block_info_init(&mut info) };
    let mut config = TensorConfig::initialized();
    let mut diag = diagnostics();
    check(
        unsafe {
            sys::kvc_get_block_info(
                data.as_ptr() as *const c_void,
                data.len(),
                &mut info,
                &mut config,
                &mut diag,
            )
        },
        Some(&diag),
    )?;
    Ok(BlockInfo {
        position: BlockPosition {
            layer: info.layer,
            kind: if info.kind == sys::KVC_KIND_KEYS as u32 { Kind::Keys } else { Kind::Values },
            head_start: info.head_start,
            token_start: info.token_start,
        },
        head_count: info.head_count as usize,
        token_count: info.token_count as usize,
        head_dim: info.head_dim as usize,
        method: TensorConfig(config),
    })
}

/// Decodes a block into `output`, a view of its shape.
pub fn decode_block_into<T: Element>(data: &[u8], output: &mut TensorMut<'_, T, 3>) -> Result<()> {
    let tensor = output.raw();
    let mut diag = diagnostics();
    check(
        unsafe {
            sys::kvc_decode_block(data.as_ptr() as *const c_void, data.len(), &tensor, &mut diag)
        },
        Some(&diag),
    )
}

/// Decodes a block into a new [heads, tokens, head_dim] array.
pub fn decode_block<T: Element>(data: &[u8]) -> Result<Array<T, 3>> {
    let shape = block_info(data)?.shape();
    let mut values = vec![T::default(); shape.iter().product()];
    decode_block_into(data, &mut TensorMut::new(&mut values, shape)?)?;
    Ok(Array { data: values, shape })
}

/// Inner products of queries with the block's vectors, computed by the codec
/// (TurboQuant: in its rotated domain; tq-prod: its unbiased estimator).
/// `queries`: contiguous [head_count, queries_per_head, head_dim]. Returns
/// [head_count, queries_per_head, token_count].
pub fn block_scores(data: &[u8], queries: &[f32], queries_per_head: usize) -> Result<Array<f32, 3>> {
    let info = block_info(data)?;
    if queries_per_head == 0 || queries.len() != info.head_count * queries_per_head * info.head_dim {
        return Err(Error::invalid(format!(
            "queries must be [{}, {}, {}]: {} floats, not {}",
            info.head_count,
            queries_per_head,
            info.head_dim,
            info.head_count * queries_per_head * info.head_dim,
            queries.len()
        )));
    }
    let shape = [info.head_count, queries_per_head, info.token_count];
    let mut scores = vec![0f32; shape.iter().product()];
    let mut diag = diagnostics();
    check(
        unsafe {
            sys::kvc_block_scores(
                data.as_ptr() as *const c_void,
                data.len(),
                queries.as_ptr(),
                to_u32(queries_per_head, "queries_per_head")?,
                scores.as_mut_ptr(),
                scores.len(),
                &mut diag,
            )
        },
        Some(&diag),
    )?;
    Ok(Array { data: scores, shape })
}

/// Weighted sums of the block's vectors, computed by the codec (rotation
/// methods: accumulated in their rotated domain, rotated back once per
/// output): `out[h][q] = sum over t of weights[h][q][t] * v[h][t]`.
/// `weights`: contiguous [head_count, queries_per_head, token_count] (the
/// layout of [`block_scores`]' result). Returns [head_count,
/// queries_per_head, head_dim].
pub fn block_attend(data: &[u8], weights: &[f32], queries_per_head: usize) -> Result<Array<f32, 3>> {
    let info = block_info(data)?;
    if queries_per_head == 0 || weights.len() != info.head_count * queries_per_head * info.token_count {
        return Err(Error::invalid(format!(
            "weights must be [{}, {}, {}]: {} floats, not {}",
            info.head_count,
            queries_per_head,
            info.token_count,
            info.head_count * queries_per_head * info.token_count,
            weights.len()
        )));
    }
    let shape = [info.head_count, queries_per_head, info.head_dim];
    let mut out = vec![0f32; shape.iter().product()];
    let mut diag = diagnostics();
    check(
        unsafe {
            sys::kvc_block_attend(
                data.as_ptr() as *const c_void,
                data.len(),
                weights.as_ptr(),
                to_u32(queries_per_head, "queries_per_head")?,
                out.as_mut_ptr(),
                out.len(),
                &mut diag,
            )
        },
        Some(&diag),
    )?;
    Ok(Array { data: out, shape })
}

/// Options of [`decode_attention`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionOptions {
    /// 0: one per core.
    pub threads: u32,
    /// Logits are `scale * q.k`; None: 1/sqrt(head_dim).
    pub scale: Option<f32>,
    /// The attended tokens `[token_begin, token_end)`, as the blocks number
    /// them; `token_end` 0: through the last token the blocks hold.
    pub token_begin: u32,
    pub token_end: u32,
    /// Skip the blocks' checksums, for blocks checked once when they were
    /// loaded (e.g. by [`block_info`]): each block is then read once per
    /// step. Their structure is still checked; damage gives a wrong result.
    pub trusted_blocks: bool,
}

impl Default for AttentionOptions {
    fn default() -> Self {
        AttentionOptions { threads: 0, scale: None, token_begin: 0, token_end: 0, trusted_blocks: false }
    }
}

/// The result of [`decode_attention`].
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    /// [num_query_heads, head_dim].
    pub out: Array<f32, 2>,
    /// Per query head, the natural log of its softmax denominator (the sum
    /// over t of exp(scale * q.k_t)), to merge with attention over other
    /// tokens.
    pub lse: Vec<f32>,
}

/// One decode step of attention for one layer on its encoded K and V blocks
/// (standalone blocks of that layer, in any order, together covering KV
/// heads [h0, h0 + H) and, for each, one contiguous token range exactly
/// once; the value blocks the same heads and tokens): for every query head
/// j, `out[j] = softmax(scale * q_j . k_t) . v_t` over the attended tokens.
/// `queries`: contiguous [num_query_heads, head_dim], num_query_heads a
/// multiple of H; query head j reads KV head h0 + j / (num_query_heads / H)
/// (grouped-query attention).
pub fn decode_attention<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    key_blocks: &[K],
    value_blocks: &[V],
    queries: &[f32],
    options: &AttentionOptions,
) -> Result<Attention> {
    attention(key_blocks, value_blocks, queries, options, None)
}

/// A thread pool of the caller's (the C API's `kvc_parallel_runner`): a
/// decode step is short, and starting threads for each (what
/// [`decode_attention`] does with `threads` other than 1) can cost more than
/// the step. `run` must call `job(i)` exactly once for every `i` in
/// `0..count`, on any of its threads (the calling one included) in any order,
/// and return once every call has returned. A rayon pool, for one:
/// `pool.install(|| (0..count).into_par_iter().for_each(|i| job(i)))`.
pub trait Runner: Sync {
    fn run(&self, count: usize, job: &(dyn Fn(usize) + Sync));
}

/// [`decode_attention`] with its jobs on `runner` (`options.threads` is then
/// not used). A runner that returns without running every job, or panics,
/// makes the call fail; it does not give a partial result.
pub fn decode_attention_on<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    runner: &dyn Runner,
    key_blocks: &[K],
    value_blocks: &[V],
    queries: &[f32],
    options: &AttentionOptions,
) -> Result<Attention> {
    attention(key_blocks, value_blocks, queries, options, Some(runner))
}

/// One call's jobs, as kvcodec hands them to a runner: they may run
/// concurrently (kvc_parallel_runner's contract), so the pointer may be
/// shared across threads.
struct CJobs {
    job: sys::kvc_job_fn,
    opaque: *mut c_void,
}
unsafe impl Sync for CJobs {}

impl CJobs {
    fn run(&self, i: usize) {
        if let Some(job) = self.job {
            unsafe { job(self.opaque, i) }
        }
    }
}

unsafe extern "C" fn run_on_runner(runner_opaque: *mut c_void, job_opaque: *mut c_void,
                                   job: sys::kvc_job_fn, count: usize) {
    let runner = &*(runner_opaque as *const &dyn Runner);
    let jobs = CJobs { job, opaque: job_opaque };
    let call = |i: usize| jobs.run(i);
    // No panic may unwind into C; the jobs it left unrun make the call fail.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run(count, &call)));
}

fn attention<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    key_blocks: &[K],
    value_blocks: &[V],
    queries: &[f32],
    options: &AttentionOptions,
    runner: Option<&dyn Runner>,
) -> Result<Attention> {
    let buffers = |blocks: &[&[u8]]| -> Vec<sys::kvc_buffer> {
        blocks.iter().map(|b| sys::kvc_buffer { data: b.as_ptr() as *const c_void, size: b.len() }).collect()
    };
    let keys: Vec<&[u8]> = key_blocks.iter().map(|b| b.as_ref()).collect();
    let values: Vec<&[u8]> = value_blocks.iter().map(|b| b.as_ref()).collect();
    // The library reads num_query_heads x the blocks' head_dim floats of
    // queries: their count must be a multiple of it. Without blocks the
    // library names the problem (it reads no queries).
    let head_dim = match keys.first() {
        Some(first) => block_info(first)?.head_dim,
        None => queries.len().max(1),
    };
    if queries.is_empty() || queries.len() % head_dim != 0 {
        return Err(Error::invalid(format!(
            "queries must be [num_query_heads, {}]: a positive multiple of {} floats, not {}",
            head_dim,
            head_dim,
            queries.len()
        )));
    }
    let num_query_heads = queries.len() / head_dim;
    let mut c_options = sys::kvc_attention_options::default();
    unsafe { sys::kvc_attention_options_init(&mut c_options) };
    c_options.threads = options.threads;
    c_options.token_begin = options.token_begin;
    c_options.token_end = options.token_end;
    c_options.flags = if options.trusted_blocks { sys::KVC_ATTENTION_TRUSTED_BLOCKS } else { 0 };
    if let Some(runner) = &runner {
        c_options.runner = Some(run_on_runner);
        c_options.runner_opaque = runner as *const &dyn Runner as *mut c_void;
    }
    if let Some(scale) = options.scale {
        if scale == 0.0 {
            return Err(Error::invalid(
                "scale Some(0.0) cannot be passed: the C API reads 0 as 1/sqrt(head_dim) (None)",
            ));
        }
        c_options.scale = scale;
    }
    let (key_buffers, value_buffers) = (buffers(&keys), buffers(&values));
    let mut out = vec![0f32; queries.len()];
    let mut lse = vec![0f32; num_query_heads];
    let mut diag = diagnostics();
    check(
        unsafe {
            sys::kvc_decode_attention(
                key_buffers.as_ptr(),
                key_buffers.len(),
                value_buffers.as_ptr(),
                value_buffers.len(),
                queries.as_ptr(),
                to_u32(num_query_heads, "num_query_heads")?,
                &c_options,
                out.as_mut_ptr(),
                out.len(),
                lse.as_mut_ptr(),
                &mut diag,
            )
        },
        Some(&diag),
    )?;
    Ok(Attention { out: Array { data: out, shape: [num_query_heads, head_dim] }, lse })
}

// ---------------------------------------------------------------------------
// Streams: whole caches

/// How the cache's RoPE pairs dimensions (recorded; Block-GTQ uses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    Unknown,
    SplitHalf,
    Interleaved,
}

impl RopeLayout {
    fn code(self) -> u32 {
        match self {
            RopeLayout::Unknown => sys::KVC_ROPE_UNKNOWN,
            RopeLayout::SplitHalf => sys::KVC_ROPE_SPLIT_HALF,
            RopeLayout::Interleaved => sys::KVC_ROPE_INTERLEAVED,
        }
    }

    fn from_code(code: u32) -> RopeLayout {
        match code {
            sys::KVC_ROPE_SPLIT_HALF => RopeLayout::SplitHalf,
            sys::KVC_ROPE_INTERLEAVED => RopeLayout::Interleaved,
            _ => RopeLayout::Unknown,
        }
    }
}

/// Options of encode_stream, and the cache's description.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamOptions {
    /// 0: one per core.
    pub threads: u32,
    /// Tokens per block; 0: all tokens in one block.
    pub block_tokens: u32,
    pub rope_layout: RopeLayout,
    /// RoPE position of token 0.
    pub position_offset: u32,
    /// RoPE theta; 0 if unknown.
    pub rope_base: f32,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            threads: 0,
            block_tokens: 0,
            rope_layout: RopeLayout::Unknown,
            position_offset: 0,
            rope_base: 0.0,
        }
    }
}

/// Encodes a whole cache: keys and values [layers, heads, tokens, head_dim].
pub fn encode_stream<K: Element, V: Element>(
    config: &Config,
    keys: &TensorRef<'_, K, 4>,
    values: &TensorRef<'_, V, 4>,
    options: &StreamOptions,
) -> Result<Vec<u8>> {
    let mut desc = sys::kvc_cache_desc::default();
    unsafe { sys::kvc_cache_desc_init(&mut desc) };
    let [layers, heads, tokens, dim] = keys.shape;
    desc.num_layers = to_u32(layers, "layers")?;
    desc.num_kv_heads = to_u32(heads, "heads")?;
    desc.num_tokens = to_u32(tokens, "tokens")?;
    desc.head_dim = to_u32(dim, "head_dim")?;
    desc.dtype = K::DTYPE.code();
    desc.rope_layout = options.rope_layout.code();
    desc.position_offset = options.position_offset;
    desc.rope_base = options.rope_base;
    let mut encode = sys::kvc_encode_options {
        struct_size: 0,
        threads: 0,
        block_tokens: 0,
        queries: ptr::null(),
    };
    unsafe { sys::kvc_encode_options_init(&mut encode) };
    encode.threads = options.threads;
    encode.block_tokens = options.block_tokens;
    let (k, v) = (keys.raw(), values.raw());
    let bound = unsafe { sys::kvc_stream_bound(config.raw.as_ptr(), &desc, &encode) };
    encode_into(bound, |dst, capacity, size, diag| unsafe {
        sys::kvc_encode_stream(
            config.raw.as_ptr(),
            &desc,
            &k,
            &v,
            &encode,
            dst,
            capacity,
            size,
            diag,
        )
    })
}

/// A stream's header.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamInfo {
    pub format_major: u32,
    pub format_minor: u32,
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub num_tokens: usize,
    pub head_dim: usize,
    /// The source cache's dtype, as recorded (None: a dtype newer than this crate).
    pub dtype: Option<DType>,
    pub rope_layout: RopeLayout,
    pub position_offset: u32,
    pub rope_base: f32,
}

impl StreamInfo {
    /// [layers, heads, tokens, head_dim] of keys and of values.
    pub fn shape(&self) -> [usize; 4] {
        [self.num_layers, self.num_kv_heads, self.num_tokens, self.head_dim]
    }
}

/// Reads and checks a stream's header.
pub fn stream_info(data: &[u8]) -> Result<StreamInfo> {
    let mut info = sys::kvc_stream_info::default();
    unsafe { sys::kvc_stream_info_init(&mut info) };
    let mut diag = diagnostics();
    check(
        unsafe {
            sys::kvc_get_stream_info(data.as_ptr() as *const c_void, data.len(), &mut info, &mut diag)
        },
        Some(&diag),
    )?;
    Ok(stream_info_from(&info))
}

fn stream_info_from(info: &sys::kvc_stream_info) -> StreamInfo {
    StreamInfo {
        format_major: info.format_major,
        format_minor: info.format_minor,
        num_layers: info.num_layers as usize,
        num_kv_heads: info.num_kv_heads as usize,
        num_tokens: info.num_tokens as usize,
        head_dim: info.head_dim as usize,
        dtype: DType::from_code(info.dtype),
        rope_layout: RopeLayout::from_code(info.rope_layout),
        position_offset: info.position_offset,
        rope_base: info.rope_base,
    }
}

/// One layer of a stream: its methods and the bytes its blocks take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub keys: TensorConfig,
    pub values: TensorConfig,
    pub keys_bytes: u64,
    pub values_bytes: u64,
}

/// Describes one layer of a stream (walks and checks the stream).
pub fn stream_layer(data: &[u8], layer: u32) -> Result<LayerInfo> {
    let (mut keys, mut values) = (TensorConfig::initialized(), TensorConfig::initialized());
    let (mut keys_bytes, mut values_bytes) = (0u64, 0u64);
    let mut diag = diagnostics();
    check(
        unsafe {
            sys::kvc_get_stream_layer(
                data.as_ptr() as *const c_void,
                data.len(),
                layer,
                &mut keys,
                &mut values,
                &mut keys_bytes,
                &mut values_bytes,
                &mut diag,
            )
        },
        Some(&diag),
    )?;
    Ok(LayerInfo {
        keys: TensorConfig(keys),
        values: TensorConfig(values),
        keys_bytes,
        values_bytes,
    })
}

/// Decodes a whole stream into views; either may be None to skip it (its
/// structure and checksums are still checked). threads: 0 for one per core.
pub fn decode_stream_into<K: Element, V: Element>(
    data: &[u8],
    keys: Option<&mut TensorMut<'_, K, 4>>,
    values: Option<&mut TensorMut<'_, V, 4>>,
    threads: u32,
) -> Result<()> {
    let k = keys.map(|t| t.raw());
    let v = values.map(|t| t.raw());
    let mut options = sys::kvc_decode_options::default();
    unsafe { sys::kvc_decode_options_init(&mut options) };
    options.threads = threads;
    let mut diag = diagnostics();
    check(
        unsafe {
            sys::kvc_decode_stream(
                data.as_ptr() as *const c_void,
                data.len(),
                &options,
                k.as_ref().map_or(ptr::null(), |t| t as *const _),
                v.as_ref().map_or(ptr::null(), |t| t as *const _),
                &mut diag,
            )
        },
        Some(&diag),
    )
}

/// Decodes a whole stream into new (keys, values) arrays
/// [layers, heads, tokens, head_dim].
pub fn decode_stream<T: Element>(data: &[u8], threads: u32) -> Result<(Array<T, 4>, Array<T, 4>)> {
    let shape = stream_info(data)?.shape();
    let count = shape.iter().try_fold(1usize, |n, &e| n.checked_mul(e));
    let count = count.ok_or_else(|| Error::invalid("stream too large for this machine"))?;
    let mut keys = vec![T::default(); count];
    let mut values = vec![T::default(); count];
    decode_stream_into(
        data,
        Some(&mut TensorMut::new(&mut keys, shape)?),
        Some(&mut TensorMut::new(&mut values, shape)?),
        threads,
    )?;
    Ok((Array { data: keys, shape }, Array { data: values, shape }))
}
