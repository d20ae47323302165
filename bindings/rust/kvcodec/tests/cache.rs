//! Tests of the cache API (format 1.1): writer -> bytes -> random access and
//! streaming reads against the whole-stream decode, appends, damage, model
//! identity, failing and panicking I/O.
use kvcodec::*;
use std::io::{self, Cursor, Read, Write};

const SHAPE: [usize; 4] = [3, 2, 40, 64];
const BLOCK_TOKENS: u32 = 16;

/// Deterministic samples in [-2, 2) (SplitMix64).
fn sample(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 22) as f32 - 2.0
        })
        .collect()
}

fn rel_mse(a: &[f32], b: &[f32]) -> f64 {
    let error: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    error / a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>()
}

/// Elements [heads, tokens] of layer `layer` of a [layers, heads, tokens, dim] cache.
fn slice(
    data: &[f32],
    shape: [usize; 4],
    layer: usize,
    heads: std::ops::Range<usize>,
    tokens: std::ops::Range<usize>,
) -> Vec<f32> {
    let [_, h, t, d] = shape;
    let mut out = Vec::new();
    for head in heads {
        for token in tokens.clone() {
            let start = ((layer * h + head) * t + token) * d;
            out.extend_from_slice(&data[start..start + d]);
        }
    }
    out
}

fn config() -> Config {
    Config::parse("kvcodec-config 1\nall kv=tq-mse-b4\n").unwrap()
}

fn options() -> WriterOptions {
    WriterOptions {
        threads: 2,
        block_tokens: BLOCK_TOKENS,
        model_name: Some("kvlab-test".to_string()),
        model_config_hash: hash64(b"{\"layers\": 3}"),
        ..WriterOptions::default()
    }
}

/// Keys, values [layers, heads, tokens, dim] and their cache.
fn write_cache() -> (Vec<f32>, Vec<f32>, Vec<u8>) {
    let count: usize = SHAPE.iter().product();
    let (keys, values) = (sample(count, 1), sample(count, 2));
    let mut writer = CacheWriter::new(&config(), &CacheDesc::new(SHAPE), &options(), Vec::new()).unwrap();
    let layer = SHAPE[1] * SHAPE[2] * SHAPE[3];
    let shape3 = [SHAPE[1], SHAPE[2], SHAPE[3]];
    for l in 0..SHAPE[0] {
        let k = TensorRef::new(&keys[l * layer..(l + 1) * layer], shape3).unwrap();
        let v = TensorRef::new(&values[l * layer..(l + 1) * layer], shape3).unwrap();
        writer.add_layer(&k, &v).unwrap();
    }
    let size = writer.finish().unwrap();
    let bytes = writer.into_inner();
    assert_eq!(size, bytes.len() as u64);
    (keys, values, bytes)
}

#[test]
fn writer_and_random_access_match_the_whole_stream_decode() {
    let (keys, values, bytes) = write_cache();
    let (dk, dv) = decode_stream::<f32>(&bytes, 0).unwrap();
    assert_eq!(dk.shape, SHAPE);
    assert!(rel_mse(&keys, &dk.data) < 0.02);
    assert!(rel_mse(&values, &dv.data) < 0.02);

    let mut cache = CacheFile::open(Cursor::new(&bytes[..]), &OpenOptions::default()).unwrap();
    let info = cache.info().unwrap();
    assert_eq!(info.stream.shape(), SHAPE);
    assert_eq!((info.stream.format_major, info.stream.format_minor), (1, 1));
    assert_eq!((info.segments, info.size, info.ignored_bytes), (1, bytes.len() as u64, 0));
    // 3 blocks of at most 16 tokens per layer and kind.
    assert_eq!(info.blocks, 3 * 2 * 3);
    assert_eq!(info.model_name.as_deref(), Some("kvlab-test"));
    assert_eq!(info.model_config_hash, hash64(b"{\"layers\": 3}"));
    let (kc, vc) = cache.layer_config(2).unwrap();
    assert_eq!((kc.text().unwrap(), vc.text().unwrap()), ("tq-mse-b4".to_string(), "tq-mse-b4".to_string()));
    let mut tokens = 0;
    for index in 0..info.blocks {
        let entry = cache.block(index).unwrap();
        assert!(entry.offset + entry.size <= info.size);
        if entry.layer == 1 && entry.kind == Kind::Values {
            tokens += entry.token_count;
        }
    }
    assert_eq!(tokens, 40);
    assert_eq!(cache.block(info.blocks).unwrap_err().status(), Status::InvalidArgument);

    for layer in 0..3 {
        for (kind, whole) in [(Kind::Keys, &dk.data), (Kind::Values, &dv.data)] {
            let all = cache.read::<f32>(layer as u32, kind, 0..2, 0..40).unwrap();
            assert_eq!(all.shape, [2, 40, 64]);
            assert_eq!(all.data, slice(whole, SHAPE, layer, 0..2, 0..40));
            // A window across block boundaries reads the same values.
            let part = cache.read::<f32>(layer as u32, kind, 1..2, 5..37).unwrap();
            assert_eq!(part.data, slice(whole, SHAPE, layer, 1..2, 5..37));
        }
    }
    assert!(cache.read::<f32>(3, Kind::Keys, 0..2, 0..40).is_err());
    assert!(cache.read::<f32>(0, Kind::Keys, 0..2, 30..50).is_err());
}

/// Hands out at most `piece` bytes per read, as a network would.
struct Trickle<R> {
    inner: R,
    piece: usize,
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.piece);
        self.inner.read(&mut buf[..n])
    }
}

#[test]
fn streaming_reader_in_small_pieces() {
    let (_, _, bytes) = write_cache();
    let (dk, dv) = decode_stream::<f32>(&bytes, 0).unwrap();
    let source = Trickle { inner: Cursor::new(&bytes), piece: 7 };
    let mut reader = StreamReader::new(source, &OpenOptions::default()).unwrap();
    assert_eq!(reader.info().shape(), SHAPE);
    assert_eq!(reader.read::<f32>().unwrap_err().status(), Status::InvalidArgument);
    let mut layers = Vec::new();
    while let Some(run) = reader.next().unwrap() {
        assert_eq!((run.token_start, run.token_count, run.segment), (0, 40, 0));
        let (k, v) = reader.read::<f32>().unwrap();
        let layer = run.layer as usize;
        assert_eq!(k.data, slice(&dk.data, SHAPE, layer, 0..2, 0..40));
        assert_eq!(v.data, slice(&dv.data, SHAPE, layer, 0..2, 0..40));
        layers.push(run.layer);
    }
    assert_eq!(layers, vec![0, 1, 2]);
    assert_eq!(reader.next().unwrap(), None);
}

#[test]
fn a_damaged_byte_is_a_checksum_error() {
    let (_, _, mut bytes) = write_cache();
    let entry = {
        let cache = CacheFile::open(Cursor::new(&bytes[..]), &OpenOptions::default()).unwrap();
        cache.block(4).unwrap() // layer 0 or 1, the middle of a block
    };
    bytes[(entry.offset + entry.size / 2) as usize] ^= 0x10;

    let mut cache = CacheFile::open(Cursor::new(&bytes[..]), &OpenOptions::default()).unwrap();
    let error = cache.read::<f32>(entry.layer, entry.kind, 0..2, 0..40).unwrap_err();
    assert_eq!(error.status(), Status::Checksum, "{}", error);
    // The other kind of the same layer is intact.
    let other = if entry.kind == Kind::Keys { Kind::Values } else { Kind::Keys };
    cache.read::<f32>(entry.layer, other, 0..2, 0..40).unwrap();

    let mut reader = StreamReader::new(Cursor::new(&bytes), &OpenOptions::default()).unwrap();
    let error = loop {
        let run = reader.next().unwrap().expect("the damaged layer comes before the end");
        if let Err(e) = reader.read::<f32>() {
            assert_eq!(run.layer, entry.layer);
            break e;
        }
    };
    assert_eq!(error.status(), Status::Checksum, "{}", error);
}

#[test]
fn append_continues_the_cache() {
    let (_, _, bytes) = write_cache();
    let new_tokens = 8usize;
    let count = SHAPE[1] * new_tokens * SHAPE[3];
    let shape3 = [SHAPE[1], new_tokens, SHAPE[3]];
    let appended = {
        let cache = CacheFile::open(Cursor::new(&bytes[..]), &OpenOptions::default()).unwrap();
        let size = cache.info().unwrap().size as usize;
        let mut writer = cache.append(new_tokens as u32, &options(), bytes[..size].to_vec()).unwrap();
        for layer in 0..SHAPE[0] as u64 {
            let k = sample(count, 10 + layer);
            let v = sample(count, 20 + layer);
            writer.add_layer(&TensorRef::new(&k, shape3).unwrap(), &TensorRef::new(&v, shape3).unwrap()).unwrap();
        }
        writer.finish().unwrap();
        writer.into_inner()
    };
    let mut cache = CacheFile::open(Cursor::new(&appended[..]), &OpenOptions::default()).unwrap();
    let info = cache.info().unwrap();
    assert_eq!((info.segments, info.stream.num_tokens, info.size), (2, 48, appended.len() as u64));
    let old = cache.read::<f32>(1, Kind::Keys, 0..2, 0..40).unwrap();
    let new = cache.read::<f32>(1, Kind::Values, 0..2, 40..48).unwrap();
    assert!(rel_mse(&sample(count, 21), &new.data) < 0.02);

    // The streaming reader delivers the first segment, then the appended one.
    let mut reader = StreamReader::new(Cursor::new(&appended), &OpenOptions::default()).unwrap();
    let mut runs = Vec::new();
    while let Some(run) = reader.next().unwrap() {
        let (k, v) = reader.read::<f32>().unwrap();
        if run.layer == 1 && run.segment == 0 {
            assert_eq!(k.data, old.data);
        }
        if run.layer == 1 && run.segment == 1 {
            assert_eq!(v.data, new.data);
        }
        runs.push((run.segment, run.layer, run.token_start, run.token_count));
    }
    assert_eq!(runs, vec![(0, 0, 0, 40), (0, 1, 0, 40), (0, 2, 0, 40), (1, 0, 40, 8), (1, 1, 40, 8), (1, 2, 40, 8)]);

    // An interrupted append: the cache opens as it was.
    let cut = &appended[..bytes.len() + (appended.len() - bytes.len()) / 2];
    let cache = CacheFile::open(Cursor::new(cut), &OpenOptions::default()).unwrap();
    let info = cache.info().unwrap();
    assert_eq!((info.segments, info.stream.num_tokens), (1, 40));
    assert_eq!(info.ignored_bytes, (cut.len() - bytes.len()) as u64);
}

#[test]
fn model_identity_is_checked() {
    let (_, _, bytes) = write_cache();
    let expect = |name: &str, allow: bool| OpenOptions {
        expect_model_name: Some(name.to_string()),
        allow_model_mismatch: allow,
        ..OpenOptions::default()
    };
    CacheFile::open(Cursor::new(&bytes[..]), &expect("kvlab-test", false)).unwrap();
    let error = CacheFile::open(Cursor::new(&bytes[..]), &expect("other", false)).err().unwrap();
    assert_eq!(error.status(), Status::ModelMismatch);
    CacheFile::open(Cursor::new(&bytes[..]), &expect("other", true)).unwrap();
    let error = StreamReader::new(Cursor::new(&bytes), &expect("other", false)).err().unwrap();
    assert_eq!(error.status(), Status::ModelMismatch);
}

/// Accepts `left` bytes, then fails or panics.
struct Failing {
    left: usize,
    panic: bool,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.left {
            if self.panic {
                panic!("writer panicked");
            }
            return Err(io::Error::new(io::ErrorKind::Other, "disk full"));
        }
        self.left -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn io_errors_and_panics_come_back() {
    let count = SHAPE[1] * SHAPE[2] * SHAPE[3];
    let data = sample(count, 3);
    let view = TensorRef::new(&data, [SHAPE[1], SHAPE[2], SHAPE[3]]).unwrap();
    let fill = |writer: &mut CacheWriter<Failing>| -> Result<u64> {
        for _ in 0..SHAPE[0] {
            writer.add_layer(&view, &view)?;
        }
        writer.finish()
    };
    let mut writer =
        CacheWriter::new(&config(), &CacheDesc::new(SHAPE), &options(), Failing { left: 2000, panic: false })
            .unwrap();
    let error = fill(&mut writer).unwrap_err();
    assert_eq!(error.status(), Status::Io);
    assert!(error.message().contains("disk full"), "{}", error);

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut writer =
            CacheWriter::new(&config(), &CacheDesc::new(SHAPE), &options(), Failing { left: 2000, panic: true })
                .unwrap();
        let _ = fill(&mut writer);
    }));
    let payload = panicked.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"writer panicked"));

    // A source that fails mid-stream.
    let (_, _, bytes) = write_cache();
    struct Broken<'a>(&'a [u8]);
    impl Read for Broken<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(io::ErrorKind::Other, "connection reset"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut reader = StreamReader::new(Broken(&bytes[..bytes.len() / 2]), &OpenOptions::default()).unwrap();
    let error = loop {
        match reader.next().and_then(|_| reader.read::<f32>().map(|_| ())) {
            Ok(()) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(error.status(), Status::Io, "{}", error);
    assert!(error.message().contains("connection reset"), "{}", error);
}
