//! Caches on disk and on the wire (format 1.1): a writer that streams a
//! cache layer by layer into any `Write`, random access to a finished cache
//! through any `Read + Seek`, appended segments, and a sequential reader over
//! any `Read` that hands out each layer as soon as its blocks have arrived.
//!
//! The library calls back into Rust for its I/O. Each Rust object lives in a
//! `Box` whose address is the callbacks' opaque pointer; the trampolines catch
//! panics (unwinding through C is undefined) and the panic resumes once the C
//! call has returned. An I/O error is kept and joined to the library's
//! diagnostic.

use super::*;
use std::any::Any;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::raw::c_int;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// What a callback left behind: the I/O object, its first error, a panic.
struct Io<T> {
    inner: T,
    error: Option<io::Error>,
    panic: Option<Box<dyn Any + Send>>,
}

impl<T> Io<T> {
    fn new(inner: T) -> Box<Io<T>> {
        Box::new(Io { inner, error: None, panic: None })
    }

    /// Runs one callback's work: Ok -> its value, an error or panic -> `failed`.
    fn call<V>(&mut self, failed: V, work: impl FnOnce(&mut T) -> io::Result<V>) -> V {
        match catch_unwind(AssertUnwindSafe(|| work(&mut self.inner))) {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => {
                self.error.get_or_insert(e);
                failed
            }
            Err(panic) => {
                self.panic.get_or_insert(panic);
                failed
            }
        }
    }

    /// The result of a C call that may have run callbacks.
    fn check(&mut self, status: sys::kvc_status, diag: &sys::kvc_diagnostics) -> Result<()> {
        if let Some(panic) = self.panic.take() {
            resume_unwind(panic);
        }
        let result = check(status, Some(diag));
        match (result, self.error.take()) {
            (Err(e), Some(io)) => Err(Error::new(e.status(), format!("{}: {}", e.message(), io))),
            (result, _) => result,
        }
    }
}

unsafe extern "C" fn write_fn<W: Write>(opaque: *mut c_void, data: *const c_void, size: usize) -> c_int {
    let io = &mut *(opaque as *mut Io<W>);
    let bytes: &[u8] = if size == 0 { &[] } else { std::slice::from_raw_parts(data as *const u8, size) };
    io.call(1, |w| w.write_all(bytes).map(|_| 0))
}

unsafe extern "C" fn sync_fn<W: Write>(opaque: *mut c_void) -> c_int {
    let io = &mut *(opaque as *mut Io<W>);
    io.call(1, |w| w.flush().map(|_| 0))
}

unsafe extern "C" fn read_at_fn<R: Read + Seek>(
    opaque: *mut c_void,
    offset: u64,
    data: *mut c_void,
    size: usize,
) -> c_int {
    let io = &mut *(opaque as *mut Io<R>);
    let bytes: &mut [u8] =
        if size == 0 { &mut [] } else { std::slice::from_raw_parts_mut(data as *mut u8, size) };
    io.call(1, |r| {
        r.seek(SeekFrom::Start(offset))?;
        r.read_exact(bytes).map(|_| 0)
    })
}

unsafe extern "C" fn read_fn<R: Read>(opaque: *mut c_void, data: *mut c_void, size: usize) -> i64 {
    let io = &mut *(opaque as *mut Io<R>);
    let bytes: &mut [u8] =
        if size == 0 { &mut [] } else { std::slice::from_raw_parts_mut(data as *mut u8, size) };
    io.call(-1, |r| loop {
        match r.read(bytes) {
            Ok(n) => return Ok(n as i64),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    })
}

// ---------------------------------------------------------------------------
// Options and descriptions

/// Options of a cache writer (kvc_writer_options).
#[derive(Clone, Debug, PartialEq)]
pub struct WriterOptions {
    /// 0: one per core.
    pub threads: u32,
    /// Tokens per block (default 4096); 0: one block per layer and kind.
    pub block_tokens: u32,
    /// 0: the config's ([`Config::zstd_level`](crate::Config::zstd_level);
    /// none when appending); -1: none; 1..19: zstd per block, kept only
    /// where it saves 1/64 or more.
    pub zstd_level: i32,
    /// Later segments may be appended (default). false without zstd gives
    /// a stream every format-1.0 decoder reads.
    pub appendable: bool,
    /// The model the cache belongs to (up to 255 bytes).
    pub model_name: Option<String>,
    /// [`hash64`] of the model's config (0: none).
    pub model_config_hash: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        let mut raw = empty_writer_options();
        unsafe { sys::kvc_writer_options_init(&mut raw) };
        WriterOptions {
            threads: raw.threads,
            block_tokens: raw.block_tokens,
            zstd_level: raw.zstd_level,
            appendable: raw.appendable != 0,
            model_name: None,
            model_config_hash: raw.model_config_hash,
        }
    }
}

fn empty_writer_options() -> sys::kvc_writer_options {
    sys::kvc_writer_options {
        struct_size: 0,
        threads: 0,
        block_tokens: 0,
        zstd_level: 0,
        appendable: 0,
        reserved: 0,
        model_name: ptr::null(),
        model_config_hash: 0,
        sync: None,
    }
}

/// Options of opening a cache (kvc_open_options): the model it must belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Skip the model identity check.
    pub allow_model_mismatch: bool,
    pub expect_model_name: Option<String>,
    /// 0: not checked.
    pub expect_model_config_hash: u64,
}

/// The C options and the string they point to (kept alive with them).
struct RawOpenOptions {
    raw: sys::kvc_open_options,
    _name: Option<CString>,
}

impl OpenOptions {
    fn raw(&self) -> Result<RawOpenOptions> {
        let mut raw = sys::kvc_open_options {
            struct_size: 0,
            allow_model_mismatch: 0,
            expect_model_name: ptr::null(),
            expect_model_config_hash: 0,
        };
        unsafe { sys::kvc_open_options_init(&mut raw) };
        let name = self.expect_model_name.as_deref().map(|n| c_string(n, "model name")).transpose()?;
        raw.allow_model_mismatch = self.allow_model_mismatch as u32;
        raw.expect_model_name = name.as_ref().map_or(ptr::null(), |n| n.as_ptr());
        raw.expect_model_config_hash = self.expect_model_config_hash;
        Ok(RawOpenOptions { raw, _name: name })
    }
}

/// The shape and RoPE facts of a cache to write (kvc_cache_desc); the dtype
/// recorded is that of the first layer's keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheDesc {
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub num_tokens: usize,
    pub dtype: DType,
    pub rope_layout: RopeLayout,
    pub position_offset: u32,
    pub rope_base: f32,
}

impl CacheDesc {
    /// A cache of [layers, heads, tokens, head_dim] f32 keys and values.
    pub fn new(shape: [usize; 4]) -> CacheDesc {
        CacheDesc {
            num_layers: shape[0],
            num_kv_heads: shape[1],
            num_tokens: shape[2],
            head_dim: shape[3],
            dtype: DType::F32,
            rope_layout: RopeLayout::Unknown,
            position_offset: 0,
            rope_base: 0.0,
        }
    }

    fn raw(&self) -> Result<sys::kvc_cache_desc> {
        let mut desc = sys::kvc_cache_desc::default();
        unsafe { sys::kvc_cache_desc_init(&mut desc) };
        desc.num_layers = to_u32(self.num_layers, "layers")?;
        desc.num_kv_heads = to_u32(self.num_kv_heads, "heads")?;
        desc.head_dim = to_u32(self.head_dim, "head_dim")?;
        desc.num_tokens = to_u32(self.num_tokens, "tokens")?;
        desc.dtype = self.dtype.code();
        desc.rope_layout = self.rope_layout.code();
        desc.position_offset = self.position_offset;
        desc.rope_base = self.rope_base;
        Ok(desc)
    }
}

/// XXH64 (seed 0) of bytes: a model identity's config hash, e.g. of its
/// config.json.
pub fn hash64(data: &[u8]) -> u64 {
    unsafe { sys::kvc_hash64(data.as_ptr() as *const c_void, data.len()) }
}

// ---------------------------------------------------------------------------
// Writing

/// Writes a cache one layer at a time into `W`, then its block index.
/// `Write::flush` is the sync called before and after the index is
/// committed (a `File` writer that must be durable syncs in its flush, e.g.
/// a wrapper calling `sync_data`).
pub struct CacheWriter<W: Write> {
    raw: *mut sys::kvc_writer,
    io: Option<Box<Io<W>>>,
}

impl<W: Write> CacheWriter<W> {
    /// Starts a cache; its header and layer configs are written at once.
    pub fn new(config: &Config, desc: &CacheDesc, options: &WriterOptions, writer: W) -> Result<Self> {
        let desc = desc.raw()?;
        Self::start(options, writer, |raw_options, write, opaque, out, diag| unsafe {
            sys::kvc_writer_create(config.raw.as_ptr(), &desc, raw_options, write, opaque, out, diag)
        })
    }

    fn start(
        options: &WriterOptions,
        writer: W,
        create: impl FnOnce(
            &sys::kvc_writer_options,
            sys::kvc_write_fn,
            *mut c_void,
            *mut *mut sys::kvc_writer,
            *mut sys::kvc_diagnostics,
        ) -> sys::kvc_status,
    ) -> Result<Self> {
        let name = options.model_name.as_deref().map(|n| c_string(n, "model name")).transpose()?;
        let mut raw = empty_writer_options();
        unsafe { sys::kvc_writer_options_init(&mut raw) };
        raw.threads = options.threads;
        raw.block_tokens = options.block_tokens;
        raw.zstd_level = options.zstd_level;
        raw.appendable = options.appendable as u32;
        raw.model_name = name.as_ref().map_or(ptr::null(), |n| n.as_ptr());
        raw.model_config_hash = options.model_config_hash;
        raw.sync = Some(sync_fn::<W>);
        let mut io = Io::new(writer);
        let mut out = ptr::null_mut();
        let mut diag = diagnostics();
        let opaque = &mut *io as *mut Io<W> as *mut c_void;
        let status = create(&raw, Some(write_fn::<W>), opaque, &mut out, &mut diag);
        io.check(status, &diag)?;
        if out.is_null() {
            return Err(Error::new(Status::Internal, "the library returned no writer"));
        }
        Ok(CacheWriter { raw: out, io: Some(io) })
    }

    fn io(&mut self) -> &mut Io<W> {
        self.io.as_mut().expect("the writer's sink lives until into_inner")
    }

    /// The next layer (0, 1, ... in order): keys and values
    /// [heads, tokens, head_dim], tokens being this segment's.
    pub fn add_layer<K: Element, V: Element>(
        &mut self,
        keys: &TensorRef<'_, K, 3>,
        values: &TensorRef<'_, V, 3>,
    ) -> Result<()> {
        let (k, v) = (keys.raw(), values.raw());
        let mut diag = diagnostics();
        let status = unsafe { sys::kvc_writer_add_layer(self.raw, &k, &v, &mut diag) };
        self.io().check(status, &diag)
    }

    /// Writes the index and the End section once every layer was added;
    /// returns the bytes of the whole stream.
    pub fn finish(&mut self) -> Result<u64> {
        let mut size = 0u64;
        let mut diag = diagnostics();
        let status = unsafe { sys::kvc_writer_finish(self.raw, &mut size, &mut diag) };
        self.io().check(status, &diag)?;
        Ok(size)
    }

    pub fn get_ref(&self) -> &W {
        &self.io.as_ref().expect("the writer's sink lives until into_inner").inner
    }

    /// The underlying writer (an unfinished cache stays incomplete).
    pub fn into_inner(mut self) -> W {
        unsafe { sys::kvc_writer_destroy(self.raw) };
        self.raw = ptr::null_mut();
        self.io.take().expect("the writer's sink lives until into_inner").inner
    }
}

impl<W: Write> Drop for CacheWriter<W> {
    fn drop(&mut self) {
        // Destroying writes nothing, so no callback runs after the sink is gone.
        unsafe { sys::kvc_writer_destroy(self.raw) };
    }
}

// ---------------------------------------------------------------------------
// Random access

/// A cache's header, index and model identity (kvc_cache_info).
#[derive(Clone, Debug, PartialEq)]
pub struct CacheInfo {
    /// Required_Features of the header.
    pub features: u32,
    /// num_tokens: the whole cache's.
    pub stream: StreamInfo,
    /// 1 + appended segments.
    pub segments: u32,
    pub blocks: u32,
    /// Bytes of the complete cache.
    pub size: u64,
    /// Bytes after it: an interrupted append.
    pub ignored_bytes: u64,
    pub model_name: Option<String>,
    pub model_config_hash: u64,
}

/// Where one block lies (kvc_block_entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    pub layer: u32,
    pub kind: Kind,
    pub token_start: u32,
    pub token_count: u32,
    /// Of its section, from the start of the stream.
    pub offset: u64,
    pub size: u64,
}

/// Random access to a finished cache read through `R` (a `File`, or a
/// `Cursor` over bytes). Blocks are read, and their checksums checked, only
/// when asked for.
pub struct CacheFile<R: Read + Seek> {
    raw: NonNull<sys::kvc_cache>,
    io: Box<Io<R>>,
}

impl<R: Read + Seek> CacheFile<R> {
    /// Opens a cache from its header, layer configs and final index (a
    /// stream without index is walked once). `R`'s length is found by
    /// seeking to its end.
    pub fn open(mut reader: R, options: &OpenOptions) -> Result<Self> {
        let size = reader
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::new(Status::Io, format!("cannot find the cache's size: {}", e)))?;
        let options = options.raw()?;
        let mut io = Io::new(reader);
        let mut out = ptr::null_mut();
        let mut diag = diagnostics();
        let opaque = &mut *io as *mut Io<R> as *mut c_void;
        let status = unsafe {
            sys::kvc_cache_open(Some(read_at_fn::<R>), opaque, size, &options.raw, &mut out, &mut diag)
        };
        io.check(status, &diag)?;
        let raw = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "the library returned no cache"))?;
        Ok(CacheFile { raw, io })
    }

    pub fn info(&self) -> Result<CacheInfo> {
        let mut info = sys::kvc_cache_info {
            struct_size: 0,
            features: 0,
            stream: sys::kvc_stream_info::default(),
            segments: 0,
            blocks: 0,
            size: 0,
            ignored_bytes: 0,
            has_model: 0,
            reserved: 0,
            model_config_hash: 0,
            model_name: [0; 256],
        };
        unsafe { sys::kvc_cache_info_init(&mut info) };
        let mut diag = diagnostics();
        check(unsafe { sys::kvc_cache_get_info(self.raw.as_ptr(), &mut info, &mut diag) }, Some(&diag))?;
        // NUL-terminated within its 256 bytes (the library writes it so).
        let name = unsafe { CStr::from_ptr(info.model_name.as_ptr()) }.to_string_lossy().into_owned();
        Ok(CacheInfo {
            features: info.features,
            stream: stream_info_from(&info.stream),
            segments: info.segments,
            blocks: info.blocks,
            size: info.size,
            ignored_bytes: info.ignored_bytes,
            model_name: if info.has_model != 0 { Some(name) } else { None },
            model_config_hash: info.model_config_hash,
        })
    }

    /// The (keys, values) tensor configs of one layer.
    pub fn layer_config(&self, layer: u32) -> Result<(TensorConfig, TensorConfig)> {
        let (mut keys, mut values) = (TensorConfig::initialized(), TensorConfig::initialized());
        let mut diag = diagnostics();
        check(
            unsafe { sys::kvc_cache_layer_config(self.raw.as_ptr(), layer, &mut keys, &mut values, &mut diag) },
            Some(&diag),
        )?;
        Ok((TensorConfig(keys), TensorConfig(values)))
    }

    /// Where block `index` (0 .. info().blocks, stream order) lies.
    pub fn block(&self, index: u32) -> Result<BlockEntry> {
        let mut entry = sys::kvc_block_entry::default();
        unsafe { sys::kvc_block_entry_init(&mut entry) };
        let mut diag = diagnostics();
        check(unsafe { sys::kvc_cache_block(self.raw.as_ptr(), index, &mut entry, &mut diag) }, Some(&diag))?;
        let kind = match entry.kind as i32 {
            sys::KVC_KIND_KEYS => Kind::Keys,
            sys::KVC_KIND_VALUES => Kind::Values,
            other => return Err(Error::new(Status::Corrupt, format!("block {} has kind {}", index, other))),
        };
        Ok(BlockEntry {
            layer: entry.layer,
            kind,
            token_start: entry.token_start,
            token_count: entry.token_count,
            offset: entry.offset,
            size: entry.size,
        })
    }

    /// Decodes heads x tokens of one layer's K or V into `out`,
    /// [heads.len(), tokens.len(), head_dim]; reads only the blocks holding them.
    pub fn read_into<T: Element>(
        &mut self,
        layer: u32,
        kind: Kind,
        heads: Range<usize>,
        tokens: Range<usize>,
        out: &mut TensorMut<'_, T, 3>,
    ) -> Result<()> {
        let range = |r: &Range<usize>, what: &str| -> Result<(u32, u32)> {
            if r.start > r.end {
                return Err(Error::invalid(format!("{} range {:?} is reversed", what, r)));
            }
            Ok((to_u32(r.start, what)?, to_u32(r.end - r.start, what)?))
        };
        let (head_start, head_count) = range(&heads, "head")?;
        let (token_start, token_count) = range(&tokens, "token")?;
        let t = out.raw();
        let mut diag = diagnostics();
        let status = unsafe {
            sys::kvc_cache_read(
                self.raw.as_ptr(),
                layer,
                kind.code(),
                head_start,
                head_count,
                token_start,
                token_count,
                &t,
                &mut diag,
            )
        };
        self.io.check(status, &diag)
    }

    /// Decodes heads x tokens of one layer's K or V into a new array
    /// [heads.len(), tokens.len(), head_dim].
    pub fn read<T: Element>(
        &mut self,
        layer: u32,
        kind: Kind,
        heads: Range<usize>,
        tokens: Range<usize>,
    ) -> Result<Array<T, 3>> {
        let dim = self.info()?.stream.head_dim;
        let shape = [heads.len(), tokens.len(), dim];
        let count = shape.iter().try_fold(1usize, |n, &e| n.checked_mul(e));
        let mut data = vec![T::default(); count.ok_or_else(|| Error::invalid("read too large"))?];
        self.read_into(layer, kind, heads, tokens, &mut TensorMut::new(&mut data, shape)?)?;
        Ok(Array { data, shape })
    }

    /// A writer for `new_tokens` more tokens per layer, continuing this
    /// cache: `writer` must write at byte info().size of the same file
    /// (truncating what follows). Until it finishes, the cache reads as before.
    pub fn append<W: Write>(&self, new_tokens: u32, options: &WriterOptions, writer: W) -> Result<CacheWriter<W>> {
        let cache = self.raw.as_ptr();
        CacheWriter::start(options, writer, |raw_options, write, opaque, out, diag| unsafe {
            sys::kvc_cache_append(cache, new_tokens, raw_options, write, opaque, out, diag)
        })
    }

    pub fn into_inner(self) -> R {
        let this = std::mem::ManuallyDrop::new(self);
        unsafe {
            sys::kvc_cache_close(this.raw.as_ptr());
            ptr::read(&this.io).inner
        }
    }
}

impl<R: Read + Seek> Drop for CacheFile<R> {
    fn drop(&mut self) {
        unsafe { sys::kvc_cache_close(self.raw.as_ptr()) };
    }
}

// ---------------------------------------------------------------------------
// Sequential reading

/// One layer's tokens of one segment, as the stream delivers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerRun {
    pub layer: u32,
    pub token_start: u32,
    pub token_count: u32,
    /// 0 for the first.
    pub segment: u32,
}

/// Reads a cache from `R` in stream order with memory bounded by one block:
/// every layer of the first segment, then every layer of each appended one.
pub struct StreamReader<R: Read> {
    raw: NonNull<sys::kvc_reader>,
    io: Box<Io<R>>,
    info: StreamInfo,
    run: Option<LayerRun>,
}

impl<R: Read> StreamReader<R> {
    /// Reads the header and the layer configs.
    pub fn new(reader: R, options: &OpenOptions) -> Result<Self> {
        let options = options.raw()?;
        let mut io = Io::new(reader);
        let mut out = ptr::null_mut();
        let mut diag = diagnostics();
        let opaque = &mut *io as *mut Io<R> as *mut c_void;
        let status =
            unsafe { sys::kvc_reader_create(Some(read_fn::<R>), opaque, &options.raw, &mut out, &mut diag) };
        io.check(status, &diag)?;
        let raw = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "the library returned no reader"))?;
        // From here on `raw` owns the reader: a failure below drops it.
        let mut reader = StreamReader { raw, io, info: stream_info_from(&sys::kvc_stream_info::default()), run: None };
        let mut info = sys::kvc_stream_info::default();
        unsafe { sys::kvc_stream_info_init(&mut info) };
        check(unsafe { sys::kvc_reader_get_info(raw.as_ptr(), &mut info, &mut diag) }, Some(&diag))?;
        reader.info = stream_info_from(&info);
        Ok(reader)
    }

    /// The header; num_tokens is the first segment's.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// The next run, None once the stream is complete. Not an Iterator: a
    /// run must be read (or skipped) before the next, and each step can fail.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<LayerRun>> {
        let mut run = sys::kvc_layer_run::default();
        unsafe { sys::kvc_layer_run_init(&mut run) };
        let mut diag = diagnostics();
        self.run = None;
        let status = unsafe { sys::kvc_reader_next(self.raw.as_ptr(), &mut run, &mut diag) };
        self.io.check(status, &diag)?;
        if run.end != 0 {
            return Ok(None);
        }
        self.run = Some(LayerRun {
            layer: run.layer,
            token_start: run.token_start,
            token_count: run.token_count,
            segment: run.segment,
        });
        Ok(self.run)
    }

    /// Decodes the current run into keys and values
    /// [heads, run.token_count, head_dim]; either may be None to skip it (its
    /// blocks are still checked).
    pub fn read_into<K: Element, V: Element>(
        &mut self,
        keys: Option<&mut TensorMut<'_, K, 3>>,
        values: Option<&mut TensorMut<'_, V, 3>>,
    ) -> Result<()> {
        let k = keys.map(|t| t.raw());
        let v = values.map(|t| t.raw());
        let mut diag = diagnostics();
        let status = unsafe {
            sys::kvc_reader_read(
                self.raw.as_ptr(),
                k.as_ref().map_or(ptr::null(), |t| t as *const _),
                v.as_ref().map_or(ptr::null(), |t| t as *const _),
                &mut diag,
            )
        };
        self.io.check(status, &diag)
    }

    /// Decodes the current run into new (keys, values) arrays.
    pub fn read<T: Element>(&mut self) -> Result<(Array<T, 3>, Array<T, 3>)> {
        let run = self.run.ok_or_else(|| Error::invalid("no current run: call next() first"))?;
        let shape = [self.info.num_kv_heads, run.token_count as usize, self.info.head_dim];
        let count = shape.iter().try_fold(1usize, |n, &e| n.checked_mul(e));
        let count = count.ok_or_else(|| Error::invalid("run too large for this machine"))?;
        let (mut keys, mut values) = (vec![T::default(); count], vec![T::default(); count]);
        self.read_into(
            Some(&mut TensorMut::new(&mut keys, shape)?),
            Some(&mut TensorMut::new(&mut values, shape)?),
        )?;
        Ok((Array { data: keys, shape }, Array { data: values, shape }))
    }
}

impl<R: Read> Drop for StreamReader<R> {
    fn drop(&mut self) {
        unsafe { sys::kvc_reader_destroy(self.raw.as_ptr()) };
    }
}
