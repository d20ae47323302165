//! Raw declarations of kvcodec's C API, written by hand from
//! `capi/include/kvcodec/kvcodec.h` (API 0.2). The header is the
//! documentation; the safe API is the `kvcodec` crate.
//!
//! The tests compile `bindings/conformance/abi_layout.c` against the header
//! and compare every struct's size and field offsets with these, and check
//! that every function declared here is in the header.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

pub const KVC_VERSION_MAJOR: u32 = 0;
pub const KVC_VERSION_MINOR: u32 = 2;
pub const KVC_FORMAT_MAJOR: u32 = 1;
pub const KVC_FORMAT_MINOR: u32 = 2;
pub const KVC_STREAM_MAGIC: u32 = 0x43564BB5;
pub const KVC_BLOCK_MAGIC: u32 = 0x62564BB5;

/// C enums are passed and returned as `int`.
pub type kvc_status = c_int;
pub const KVC_OK: kvc_status = 0;
pub const KVC_ERR_INVALID_ARGUMENT: kvc_status = 1;
pub const KVC_ERR_DST_TOO_SMALL: kvc_status = 2;
pub const KVC_ERR_NOT_KVCODEC: kvc_status = 3;
pub const KVC_ERR_UNSUPPORTED_VERSION: kvc_status = 4;
pub const KVC_ERR_UNSUPPORTED_FEATURE: kvc_status = 5;
pub const KVC_ERR_TRUNCATED: kvc_status = 6;
pub const KVC_ERR_CHECKSUM: kvc_status = 7;
pub const KVC_ERR_CORRUPT: kvc_status = 8;
pub const KVC_ERR_SHAPE_MISMATCH: kvc_status = 9;
pub const KVC_ERR_INVALID_VALUE: kvc_status = 10;
pub const KVC_ERR_OUT_OF_MEMORY: kvc_status = 11;
pub const KVC_ERR_INTERNAL: kvc_status = 12;
pub const KVC_ERR_MODEL_MISMATCH: kvc_status = 13;
pub const KVC_ERR_IO: kvc_status = 14;

pub type kvc_dtype = u32;
pub const KVC_DTYPE_F32: kvc_dtype = 0;
pub const KVC_DTYPE_F16: kvc_dtype = 1;
pub const KVC_DTYPE_BF16: kvc_dtype = 2;

pub type kvc_kind = c_int;
pub const KVC_KIND_KEYS: kvc_kind = 0;
pub const KVC_KIND_VALUES: kvc_kind = 1;

pub type kvc_rope_layout = u32;
pub const KVC_ROPE_UNKNOWN: kvc_rope_layout = 0;
pub const KVC_ROPE_SPLIT_HALF: kvc_rope_layout = 1;
pub const KVC_ROPE_INTERLEAVED: kvc_rope_layout = 2;

pub type kvc_method = u32;
pub const KVC_METHOD_RAW: kvc_method = 1;
pub const KVC_METHOD_TQ_MSE: kvc_method = 2;
pub const KVC_METHOD_TQ_PROD: kvc_method = 3;
pub const KVC_METHOD_TQ_OUTLIER: kvc_method = 4;
pub const KVC_METHOD_POLARQUANT: kvc_method = 5;
pub const KVC_METHOD_TURBOANGLE: kvc_method = 6;
pub const KVC_METHOD_BLOCKGTQ: kvc_method = 7;

pub const KVC_RADIUS_EXACT: u32 = 0;
pub const KVC_RADIUS_LINEAR8: u32 = 1;
pub const KVC_RADIUS_LOG4: u32 = 2;
pub const KVC_ROTATION_NONE: u32 = 0;
pub const KVC_ROTATION_HADAMARD: u32 = 1;
pub const KVC_CONFIG_NORM_CORRECTION: u32 = 0x1;
pub const KVC_CONFIG_CENTERED: u32 = 0x2;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct kvc_diagnostics {
    pub message: [c_char; 256],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kvc_tensor {
    pub data: *mut c_void,
    pub dtype: u32,
    pub ndim: u32,
    pub shape: [u64; 4],
    pub strides: [i64; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kvc_tensor_config {
    pub struct_size: u32,
    pub method: u32,
    pub bits: u32,
    pub scalar_format: u32,
    pub flags: u32,
    pub rotation: u32,
    pub seed: u64,
    pub outlier_sixteenths: u32,
    pub angle_bins: u32,
    pub radius_format: u32,
    pub level_bits: u32,
    pub min_bits: u32,
    pub rope_pairing: u32,
}

/// Opaque.
#[repr(C)]
pub struct kvc_config {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct kvc_block_info {
    pub struct_size: u32,
    pub layer: u32,
    pub kind: u32,
    pub head_dim: u32,
    pub head_start: u32,
    pub head_count: u32,
    pub token_start: u32,
    pub token_count: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct kvc_cache_desc {
    pub struct_size: u32,
    pub num_layers: u32,
    pub num_kv_heads: u32,
    pub head_dim: u32,
    pub num_tokens: u32,
    pub dtype: u32,
    pub rope_layout: u32,
    pub position_offset: u32,
    pub rope_base: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kvc_encode_options {
    pub struct_size: u32,
    pub threads: u32,
    pub block_tokens: u32,
    pub queries: *const kvc_tensor,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct kvc_decode_options {
    pub struct_size: u32,
    pub threads: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct kvc_stream_info {
    pub struct_size: u32,
    pub format_major: u32,
    pub format_minor: u32,
    pub num_layers: u32,
    pub num_kv_heads: u32,
    pub head_dim: u32,
    pub num_tokens: u32,
    pub dtype: u32,
    pub rope_layout: u32,
    pub position_offset: u32,
    pub rope_base: f32,
}

// Attention on encoded blocks.

/// A caller's buffer (no struct_size: layout fixed forever).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kvc_buffer {
    pub data: *const c_void,
    pub size: usize,
}

/// A caller's thread pool (kvcodec.h says what it must do).
pub type kvc_job_fn = Option<unsafe extern "C" fn(job_opaque: *mut c_void, index: usize)>;
pub type kvc_parallel_runner = Option<
    unsafe extern "C" fn(runner_opaque: *mut c_void, job_opaque: *mut c_void, job: kvc_job_fn,
                         count: usize),
>;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kvc_attention_options {
    pub struct_size: u32,
    pub threads: u32,
    pub scale: f32,
    pub token_begin: u32,
    pub token_end: u32,
    pub flags: u32,
    pub runner: kvc_parallel_runner,
    pub runner_opaque: *mut c_void,
}

impl Default for kvc_attention_options {
    fn default() -> Self {
        Self {
            struct_size: 0,
            threads: 0,
            scale: 0.0,
            token_begin: 0,
            token_end: 0,
            flags: 0,
            runner: None,
            runner_opaque: std::ptr::null_mut(),
        }
    }
}

/// kvc_attention_options.flags: skip the blocks' checksums.
pub const KVC_ATTENTION_TRUSTED_BLOCKS: u32 = 0x1;

// Caches on disk and on the wire (format 1.1).

pub type kvc_write_fn = Option<unsafe extern "C" fn(opaque: *mut c_void, data: *const c_void, size: usize) -> c_int>;
pub type kvc_sync_fn = Option<unsafe extern "C" fn(opaque: *mut c_void) -> c_int>;
pub type kvc_read_fn = Option<unsafe extern "C" fn(opaque: *mut c_void, data: *mut c_void, size: usize) -> i64>;
pub type kvc_read_at_fn =
    Option<unsafe extern "C" fn(opaque: *mut c_void, offset: u64, data: *mut c_void, size: usize) -> c_int>;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kvc_writer_options {
    pub struct_size: u32,
    pub threads: u32,
    pub block_tokens: u32,
    pub zstd_level: i32,
    pub appendable: u32,
    pub reserved: u32,
    pub model_name: *const c_char,
    pub model_config_hash: u64,
    pub sync: kvc_sync_fn,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kvc_open_options {
    pub struct_size: u32,
    pub allow_model_mismatch: u32,
    pub expect_model_name: *const c_char,
    pub expect_model_config_hash: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct kvc_cache_info {
    pub struct_size: u32,
    pub features: u32,
    pub stream: kvc_stream_info,
    pub segments: u32,
    pub blocks: u32,
    pub size: u64,
    pub ignored_bytes: u64,
    pub has_model: u32,
    pub reserved: u32,
    pub model_config_hash: u64,
    pub model_name: [c_char; 256],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct kvc_block_entry {
    pub struct_size: u32,
    pub layer: u32,
    pub kind: u32,
    pub token_start: u32,
    pub token_count: u32,
    pub reserved: u32,
    pub offset: u64,
    pub size: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct kvc_layer_run {
    pub struct_size: u32,
    pub end: u32,
    pub layer: u32,
    pub token_start: u32,
    pub token_count: u32,
    pub segment: u32,
}

/// Opaque.
#[repr(C)]
pub struct kvc_writer {
    _private: [u8; 0],
}
/// Opaque.
#[repr(C)]
pub struct kvc_cache {
    _private: [u8; 0],
}
/// Opaque.
#[repr(C)]
pub struct kvc_reader {
    _private: [u8; 0],
}

extern "C" {
    pub fn kvc_version() -> u32;
    pub fn kvc_version_string() -> *const c_char;
    pub fn kvc_simd_target() -> *const c_char;
    pub fn kvc_status_string(status: kvc_status) -> *const c_char;

    pub fn kvc_tensor_config_init(config: *mut kvc_tensor_config);
    pub fn kvc_tensor_config_parse(
        text: *const c_char,
        config: *mut kvc_tensor_config,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_tensor_config_format(
        config: *const kvc_tensor_config,
        buffer: *mut c_char,
        capacity: usize,
        length: *mut usize,
    ) -> kvc_status;

    pub fn kvc_preset_count() -> u32;
    pub fn kvc_preset_name(index: u32) -> *const c_char;
    pub fn kvc_preset_description(index: u32) -> *const c_char;
    pub fn kvc_config_from_preset(
        name: *const c_char,
        out: *mut *mut kvc_config,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_config_parse(
        text: *const c_char,
        length: usize,
        out: *mut *mut kvc_config,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_config_format(
        config: *const kvc_config,
        buffer: *mut c_char,
        capacity: usize,
        length: *mut usize,
    ) -> kvc_status;
    pub fn kvc_config_zstd_level(config: *const kvc_config) -> i32;
    pub fn kvc_config_set_layer(
        config: *mut kvc_config,
        layer: u32,
        kind: kvc_kind,
        tensor: *const kvc_tensor_config,
    ) -> kvc_status;
    pub fn kvc_config_layer(
        config: *const kvc_config,
        layer: u32,
        num_layers: u32,
        kind: kvc_kind,
        out: *mut kvc_tensor_config,
    ) -> kvc_status;
    pub fn kvc_config_destroy(config: *mut kvc_config);

    pub fn kvc_block_bound(
        config: *const kvc_tensor_config,
        head_count: u32,
        token_count: u32,
        head_dim: u32,
    ) -> usize;
    pub fn kvc_encode_block(
        config: *const kvc_tensor_config,
        layer: u32,
        kind: kvc_kind,
        head_start: u32,
        token_start: u32,
        input: *const kvc_tensor,
        dst: *mut c_void,
        dst_capacity: usize,
        dst_size: *mut usize,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_block_info_init(info: *mut kvc_block_info);
    pub fn kvc_get_block_info(
        src: *const c_void,
        src_size: usize,
        info: *mut kvc_block_info,
        config: *mut kvc_tensor_config,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_decode_block(
        src: *const c_void,
        src_size: usize,
        output: *const kvc_tensor,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_block_scores(
        src: *const c_void,
        src_size: usize,
        queries: *const f32,
        queries_per_head: u32,
        scores: *mut f32,
        scores_capacity: usize,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;

    pub fn kvc_block_attend(
        src: *const c_void,
        src_size: usize,
        weights: *const f32,
        queries_per_head: u32,
        out: *mut f32,
        out_capacity: usize,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_attention_options_init(options: *mut kvc_attention_options);
    pub fn kvc_decode_attention(
        key_blocks: *const kvc_buffer,
        key_block_count: usize,
        value_blocks: *const kvc_buffer,
        value_block_count: usize,
        queries: *const f32,
        num_query_heads: u32,
        options: *const kvc_attention_options,
        out: *mut f32,
        out_capacity: usize,
        lse: *mut f32,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;

    pub fn kvc_cache_desc_init(desc: *mut kvc_cache_desc);
    pub fn kvc_encode_options_init(options: *mut kvc_encode_options);
    pub fn kvc_decode_options_init(options: *mut kvc_decode_options);
    pub fn kvc_stream_bound(
        config: *const kvc_config,
        desc: *const kvc_cache_desc,
        options: *const kvc_encode_options,
    ) -> usize;
    pub fn kvc_encode_stream(
        config: *const kvc_config,
        desc: *const kvc_cache_desc,
        keys: *const kvc_tensor,
        values: *const kvc_tensor,
        options: *const kvc_encode_options,
        dst: *mut c_void,
        dst_capacity: usize,
        dst_size: *mut usize,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_stream_info_init(info: *mut kvc_stream_info);
    pub fn kvc_get_stream_info(
        src: *const c_void,
        src_size: usize,
        info: *mut kvc_stream_info,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_get_stream_layer(
        src: *const c_void,
        src_size: usize,
        layer: u32,
        keys_config: *mut kvc_tensor_config,
        values_config: *mut kvc_tensor_config,
        keys_bytes: *mut u64,
        values_bytes: *mut u64,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_decode_stream(
        src: *const c_void,
        src_size: usize,
        options: *const kvc_decode_options,
        keys: *const kvc_tensor,
        values: *const kvc_tensor,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;

    pub fn kvc_writer_options_init(options: *mut kvc_writer_options);
    pub fn kvc_hash64(data: *const c_void, size: usize) -> u64;
    pub fn kvc_writer_create(
        config: *const kvc_config,
        desc: *const kvc_cache_desc,
        options: *const kvc_writer_options,
        write: kvc_write_fn,
        opaque: *mut c_void,
        out: *mut *mut kvc_writer,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_writer_add_layer(
        writer: *mut kvc_writer,
        keys: *const kvc_tensor,
        values: *const kvc_tensor,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_writer_finish(writer: *mut kvc_writer, total_size: *mut u64, diag: *mut kvc_diagnostics)
        -> kvc_status;
    pub fn kvc_writer_destroy(writer: *mut kvc_writer);

    pub fn kvc_open_options_init(options: *mut kvc_open_options);
    pub fn kvc_cache_info_init(info: *mut kvc_cache_info);
    pub fn kvc_cache_open(
        read_at: kvc_read_at_fn,
        opaque: *mut c_void,
        size: u64,
        options: *const kvc_open_options,
        out: *mut *mut kvc_cache,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_cache_get_info(cache: *const kvc_cache, info: *mut kvc_cache_info, diag: *mut kvc_diagnostics)
        -> kvc_status;
    pub fn kvc_cache_layer_config(
        cache: *const kvc_cache,
        layer: u32,
        keys_config: *mut kvc_tensor_config,
        values_config: *mut kvc_tensor_config,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_block_entry_init(entry: *mut kvc_block_entry);
    pub fn kvc_cache_block(
        cache: *const kvc_cache,
        index: u32,
        entry: *mut kvc_block_entry,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_cache_read(
        cache: *mut kvc_cache,
        layer: u32,
        kind: kvc_kind,
        head_start: u32,
        head_count: u32,
        token_start: u32,
        token_count: u32,
        out: *const kvc_tensor,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_cache_append(
        cache: *const kvc_cache,
        new_tokens: u32,
        options: *const kvc_writer_options,
        write: kvc_write_fn,
        opaque: *mut c_void,
        out: *mut *mut kvc_writer,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_cache_close(cache: *mut kvc_cache);

    pub fn kvc_layer_run_init(run: *mut kvc_layer_run);
    pub fn kvc_reader_create(
        read: kvc_read_fn,
        opaque: *mut c_void,
        options: *const kvc_open_options,
        out: *mut *mut kvc_reader,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_reader_get_info(reader: *const kvc_reader, info: *mut kvc_stream_info, diag: *mut kvc_diagnostics)
        -> kvc_status;
    pub fn kvc_reader_next(reader: *mut kvc_reader, run: *mut kvc_layer_run, diag: *mut kvc_diagnostics)
        -> kvc_status;
    pub fn kvc_reader_read(
        reader: *mut kvc_reader,
        keys: *const kvc_tensor,
        values: *const kvc_tensor,
        diag: *mut kvc_diagnostics,
    ) -> kvc_status;
    pub fn kvc_reader_destroy(reader: *mut kvc_reader);
}
