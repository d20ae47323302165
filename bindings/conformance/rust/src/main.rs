//! The Rust side of the cross-language conformance test (../README.md):
//!     kvcodec-conformance encode OUT
//!     kvcodec-conformance decode IN OUT
use kvcodec::{
    BlockPosition, Config, Element, Kind, RopeLayout, StreamOptions, TensorRef, BF16, F16,
};
use std::fs;
use std::path::Path;
use std::process::exit;

const LAYERS: usize = 2;
const HEADS: usize = 2;
const TOKENS: usize = 40;
const DIM: usize = 64;
const QUERIES_PER_HEAD: usize = 2;
const COUNT: usize = LAYERS * HEADS * TOKENS * DIM;

type Failure = Box<dyn std::error::Error>;

/// The input of README.md: SplitMix64 draws as k * 2^(e - 8).
fn generate(seed: u64, count: usize) -> Vec<f32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let k = (z >> 56) as u8 as i8 as f32;
            k * (1u32 << ((z >> 53) & 7)) as f32 / 256.0
        })
        .collect()
}

/// Exact for the generated values (zero or normal in f16).
fn half(value: f32) -> F16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if bits & 0x7FFF_FFFF == 0 {
        return F16(sign);
    }
    F16(sign | ((((bits >> 23) & 0xFF) + 15 - 127) << 10) as u16 | ((bits >> 13) & 0x3FF) as u16)
}

fn bfloat(value: f32) -> BF16 {
    BF16((value.to_bits() >> 16) as u16)
}

fn write_encoded<T: Element>(
    preset: &str,
    dtype: &str,
    keys: &[T],
    values: &[T],
    out: &Path,
) -> Result<(), Failure> {
    let config = Config::preset(preset)?;
    let shape = [LAYERS, HEADS, TOKENS, DIM];
    let options = StreamOptions {
        threads: 2,
        block_tokens: 16,
        rope_layout: RopeLayout::SplitHalf,
        position_offset: 0,
        rope_base: 10000.0,
    };
    let stream = kvcodec::encode_stream(
        &config,
        &TensorRef::new(keys, shape)?,
        &TensorRef::new(values, shape)?,
        &options,
    )?;
    fs::write(out.join(format!("{}.{}.kvc", preset, dtype)), stream)?;
    let method = config.layer(1, LAYERS as u32, Kind::Keys)?;
    let layer1 = &keys[HEADS * TOKENS * DIM..];
    let position = BlockPosition { layer: 1, kind: Kind::Keys, head_start: 0, token_start: 0 };
    let block = kvcodec::encode_block(&method, &TensorRef::new(layer1, [HEADS, TOKENS, DIM])?, position)?;
    fs::write(out.join(format!("{}.{}.kvcb", preset, dtype)), block)?;
    Ok(())
}

fn encode(out: &Path) -> Result<(), Failure> {
    let keys = generate(1, COUNT);
    let values = generate(2, COUNT);
    for preset in kvcodec::presets() {
        let name = preset.name;
        write_encoded(name, "f32", &keys, &values, out)?;
        let (k16, v16): (Vec<F16>, Vec<F16>) = (keys.iter().map(|&x| half(x)).collect(),
                                                 values.iter().map(|&x| half(x)).collect());
        write_encoded(name, "f16", &k16, &v16, out)?;
        let (kb, vb): (Vec<BF16>, Vec<BF16>) = (keys.iter().map(|&x| bfloat(x)).collect(),
                                                 values.iter().map(|&x| bfloat(x)).collect());
        write_encoded(name, "bf16", &kb, &vb, out)?;
    }
    Ok(())
}

/// The elements' bytes in memory order (little-endian here, as in C).
fn bytes<T: Element>(values: &[T]) -> Vec<u8> {
    let size = std::mem::size_of_val(values);
    // f32, F16 and BF16 are plain data without padding.
    unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, size) }.to_vec()
}

fn decode_stream_as<T: Element>(data: &[u8], path: String) -> Result<(), Failure> {
    let (keys, values) = kvcodec::decode_stream::<T>(data, 0)?;
    let mut out = bytes(&keys.data);
    out.extend(bytes(&values.data));
    fs::write(path, out)?;
    Ok(())
}

fn decode_block_as<T: Element>(data: &[u8], path: String) -> Result<(), Failure> {
    fs::write(path, bytes(&kvcodec::decode_block::<T>(data)?.data))?;
    Ok(())
}

fn decode(source: &Path, out: &Path) -> Result<(), Failure> {
    let queries = generate(3, HEADS * QUERIES_PER_HEAD * DIM);
    let mut names: Vec<String> = fs::read_dir(source)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, std::io::Error>>()?;
    names.sort();
    for name in names {
        let data = fs::read(source.join(&name))?;
        let base = out.join(&name).to_string_lossy().into_owned();
        if name.ends_with(".kvc") {
            decode_stream_as::<f32>(&data, format!("{}.f32.raw", base))?;
            decode_stream_as::<F16>(&data, format!("{}.f16.raw", base))?;
            decode_stream_as::<BF16>(&data, format!("{}.bf16.raw", base))?;
        } else if name.ends_with(".kvcb") {
            decode_block_as::<f32>(&data, format!("{}.f32.raw", base))?;
            decode_block_as::<F16>(&data, format!("{}.f16.raw", base))?;
            decode_block_as::<BF16>(&data, format!("{}.bf16.raw", base))?;
            let scores = kvcodec::block_scores(&data, &queries, QUERIES_PER_HEAD)?;
            fs::write(format!("{}.scores.raw", base), bytes(&scores.data))?;
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["encode", out] => encode(Path::new(out)),
        ["decode", source, out] => decode(Path::new(source), Path::new(out)),
        _ => {
            eprintln!("usage: kvcodec-conformance encode OUT | kvcodec-conformance decode IN OUT");
            exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("conformance (Rust): {}", e);
        exit(1);
    }
}
