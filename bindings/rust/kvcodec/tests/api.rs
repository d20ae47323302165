//! Tests of the safe API: every preset and dtype, strided views, errors,
//! configs, streams, scores against a direct computation, threads.
use kvcodec::*;
use std::sync::Arc;

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

/// The values (a multiple of 8 of them) converted by the library: a raw-f32
/// block decoded as T.
fn convert<T: Element>(values: &[f32]) -> Vec<T> {
    let shape = [1, values.len() / 8, 8];
    let raw = TensorConfig::parse("raw-f32").unwrap();
    let block = encode_block(&raw, &TensorRef::new(values, shape).unwrap(), Default::default());
    decode_block::<T>(&block.unwrap()).unwrap().data
}

fn widen<T: Element>(values: &[T]) -> Vec<f32> {
    let shape = [1, values.len() / 8, 8];
    let raw = TensorConfig::parse("raw-f32").unwrap();
    let block = encode_block(&raw, &TensorRef::new(values, shape).unwrap(), Default::default());
    decode_block::<f32>(&block.unwrap()).unwrap().data
}

fn rel_mse(a: &[f32], b: &[f32]) -> f64 {
    let error: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    error / a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>()
}

const SHAPE: [usize; 3] = [2, 24, 64];

#[test]
fn version_and_presets() {
    assert!(version().starts_with("0.2."));
    assert!(!simd_target().is_empty());
    let presets = presets();
    assert!(presets.iter().any(|p| p.name == "tq-mse-b4" && p.description.contains("TurboQuant")));
    assert!(presets.iter().any(|p| p.name == "blockgtq-k3v3"));
}

fn round_trip<T: Element>(preset: &str, values: &[f32]) {
    let input: Vec<T> = convert(values);
    let exact = widen(&input); // the input's values as f32
    let method = Config::preset(preset).unwrap().layer(1, 2, Kind::Values).unwrap();
    let position = BlockPosition { layer: 1, kind: Kind::Values, head_start: 3, token_start: 64 };
    let block = encode_block(&method, &TensorRef::new(&input, SHAPE).unwrap(), position).unwrap();
    // Every dtype is read as f32: the same values give the same bytes.
    let from_f32 = encode_block(&method, &TensorRef::new(&exact, SHAPE).unwrap(), position);
    assert_eq!(block, from_f32.unwrap(), "{}", preset);

    let info = block_info(&block).unwrap();
    assert_eq!(info.position, position);
    assert_eq!(info.shape(), SHAPE);
    assert_eq!(info.method, method);

    let decoded = decode_block::<f32>(&block).unwrap();
    assert_eq!(decoded.shape, SHAPE);
    assert!(rel_mse(&exact, &decoded.data) < 0.7, "{}", preset); // tq-prod-b2: 0.58
    // Other dtypes: the f32 result as the library converts it.
    assert_eq!(decode_block::<F16>(&block).unwrap().data, convert::<F16>(&decoded.data));
    assert_eq!(decode_block::<BF16>(&block).unwrap().data, convert::<BF16>(&decoded.data));
}

#[test]
fn block_round_trip_every_preset_and_dtype() {
    let values = sample(SHAPE.iter().product(), 1);
    for preset in presets() {
        round_trip::<f32>(preset.name, &values);
        round_trip::<F16>(preset.name, &values);
        round_trip::<BF16>(preset.name, &values);
    }
}

#[test]
fn half_conversions_are_exact() {
    assert_eq!(F16(0x3C00).to_f32(), 1.0);
    assert_eq!(F16(0xC000).to_f32(), -2.0);
    assert_eq!(F16(0x0001).to_f32(), 2f32.powi(-24));
    assert_eq!(F16(0x7BFF).to_f32(), 65504.0);
    assert!(F16(0x7C00).to_f32().is_infinite());
    assert_eq!(BF16(0x3F80).to_f32(), 1.0);
    let values = sample(4096, 9);
    for (h, x) in convert::<F16>(&values).iter().zip(&values) {
        assert!((h.to_f32() - x).abs() <= x.abs() / 2048.0 + 1e-7);
    }
}

#[test]
fn strided_views() {
    // An engine's [tokens, heads, head_dim] buffer seen as [heads, tokens, head_dim].
    let (tokens, heads, dim) = (40usize, 4usize, 64usize);
    let engine = sample(tokens * heads * dim, 2);
    let method = TensorConfig::parse("tq-mse-b3").unwrap();
    let view = TensorRef::strided(&engine, 0, [heads, tokens, dim], [dim as isize, (heads * dim) as isize, 1])
        .unwrap();
    let mut copy = Vec::new();
    for h in 0..heads {
        for t in 0..tokens {
            copy.extend_from_slice(&engine[(t * heads + h) * dim..][..dim]);
        }
    }
    let expected = encode_block(&method, &TensorRef::new(&copy, [heads, tokens, dim]).unwrap(),
                                Default::default()).unwrap();
    assert_eq!(encode_block(&method, &view, Default::default()).unwrap(), expected);

    // Heads in reverse order: a negative stride from an offset.
    let reversed = TensorRef::strided(&copy, (heads - 1) * tokens * dim, [heads, tokens, dim],
                                      [-((tokens * dim) as isize), dim as isize, 1]).unwrap();
    let mut flipped = Vec::new();
    for h in (0..heads).rev() {
        flipped.extend_from_slice(&copy[h * tokens * dim..][..tokens * dim]);
    }
    assert_eq!(encode_block(&method, &reversed, Default::default()).unwrap(),
               encode_block(&method, &TensorRef::new(&flipped, [heads, tokens, dim]).unwrap(),
                            Default::default()).unwrap());

    // Decoding into the engine's layout.
    let decoded = decode_block::<f32>(&expected).unwrap();
    let mut out = vec![f32::NAN; engine.len()];
    let mut view = TensorMut::strided(&mut out, 0, [heads, tokens, dim],
                                      [dim as isize, (heads * dim) as isize, 1]).unwrap();
    decode_block_into(&expected, &mut view).unwrap();
    for h in 0..heads {
        for t in 0..tokens {
            assert_eq!(out[(t * heads + h) * dim..][..dim], decoded.data[(h * tokens + t) * dim..][..dim]);
        }
    }

    // Views must stay inside their slice, and all-zero strides are refused.
    let small = vec![0f32; 100];
    let e = TensorRef::strided(&small, 0, [2, 2, 64], [64, 64, 1]).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(TensorRef::strided(&small, 10, [2, 2, 4], [-10, 4, 1]).is_ok());
    assert!(TensorRef::strided(&small, 5, [2, 2, 4], [-10, 4, 1]).is_err());
    assert!(TensorRef::strided(&small, 0, [2, 2, 4], [0, 0, 0]).is_err());
    assert!(TensorRef::strided(&small, 0, [2, 2, 2], [isize::MAX, isize::MAX, isize::MAX]).is_err());
    assert!(TensorRef::strided(&small, 99, [2, 2, 2], [isize::MIN, isize::MIN, 1]).is_err());
    assert!(TensorRef::new(&small, [2, 2, 64]).is_err());
}

#[test]
fn scores_match_a_direct_computation() {
    let (heads, tokens, dim, per_head) = (2usize, 32usize, 128usize, 3usize);
    let values = sample(heads * tokens * dim, 3);
    let queries = sample(heads * per_head * dim, 4);
    for preset in presets() {
        let method = Config::preset(preset.name).unwrap().layer(0, 1, Kind::Keys).unwrap();
        let block = encode_block(&method, &TensorRef::new(&values, [heads, tokens, dim]).unwrap(),
                                 Default::default()).unwrap();
        let decoded = decode_block::<f32>(&block).unwrap().data;
        let scores = block_scores(&block, &queries, per_head).unwrap();
        assert_eq!(scores.shape, [heads, per_head, tokens]);
        for h in 0..heads {
            for q in 0..per_head {
                for t in 0..tokens {
                    let query = &queries[(h * per_head + q) * dim..][..dim];
                    let key = &decoded[(h * tokens + t) * dim..][..dim];
                    let exact: f64 = query.iter().zip(key).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let got = scores.data[(h * per_head + q) * tokens + t] as f64;
                    assert!((got - exact).abs() <= 1e-4 * (1.0 + exact.abs()), "{}", preset.name);
                }
            }
        }
        let e = block_scores(&block, &queries[1..], per_head).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
    }
}

#[test]
fn configs() {
    let mut config = Config::parse("kvcodec-config 1\nall k=tq-mse-b3 v=tq-mse-b2\nfirst 1 kv=raw-f16\n")
        .unwrap();
    assert_eq!(Config::parse(&config.text()).unwrap().text(), config.text());
    assert_eq!(config.layer(0, 4, Kind::Keys).unwrap().text().unwrap(), "raw-f16");
    assert_eq!(config.layer(2, 4, Kind::Values).unwrap().text().unwrap(), "tq-mse-b2");
    let prod: TensorConfig = "tq-prod-b3:nc".parse().unwrap();
    config.set_layer(2, Kind::Values, &prod).unwrap();
    assert_eq!(config.layer(2, 4, Kind::Values).unwrap(), prod);
    assert_eq!(config.layer(4, 4, Kind::Keys).unwrap_err().status(), Status::InvalidArgument);

    let method = TensorConfig::parse("tq-mse-b4").unwrap();
    assert_eq!(method.raw().bits, 4);
    let mut reseeded = method;
    reseeded.raw_mut().seed += 1;
    let values = sample(8 * 64, 5);
    let view = TensorRef::new(&values, [1, 8, 64]).unwrap();
    assert_ne!(encode_block(&method, &view, Default::default()).unwrap(),
               encode_block(&reseeded, &view, Default::default()).unwrap());
    let mut invalid = method;
    invalid.raw_mut().bits = 99;
    assert!(invalid.text().is_err());
    assert!(encode_block(&invalid, &view, Default::default()).is_err());
    assert!(format!("{}", invalid).contains("invalid"));
}

#[test]
fn errors_carry_status_and_diagnostic() {
    let values = sample(2 * 16 * 64, 6);
    let view = TensorRef::new(&values, [2, 16, 64]).unwrap();
    let method = TensorConfig::parse("tq-mse-b4").unwrap();
    let block = encode_block(&method, &view, Default::default()).unwrap();

    let e = decode_block::<f32>(&block[..block.len() - 3]).unwrap_err();
    assert_eq!(e.status(), Status::Truncated);
    assert_eq!(e.status().code(), 6);
    assert!(e.to_string().contains("KVC_ERR_TRUNCATED") && !e.message().is_empty());
    let mut flipped = block.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    assert_eq!(decode_block::<f32>(&flipped).unwrap_err().status(), Status::Checksum);
    assert_eq!(block_info(b"not kvcodec at all").unwrap_err().status(), Status::NotKvcodec);
    assert_eq!(stream_info(&block).unwrap_err().status(), Status::NotKvcodec);
    let mut wrong = vec![0f32; 2 * 17 * 64];
    let e = decode_block_into(&block, &mut TensorMut::new(&mut wrong, [2, 17, 64]).unwrap())
        .unwrap_err();
    assert_eq!(e.status(), Status::ShapeMismatch);

    assert_eq!(Config::preset("kv-3.25z").unwrap().zstd_level(), 3);
    assert_eq!(Config::preset("kv-3.25").unwrap().zstd_level(), 0);
    assert_eq!(Config::parse("all kv=tq-mse-b3\nzstd 9\n").unwrap().zstd_level(), 9);

    let e = Config::preset("tq-mse-b9000").unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().contains("tq-mse-b4"), "{}", e);
    assert!(!Config::parse("not a config").unwrap_err().message().is_empty());
    assert!(TensorConfig::parse("tq-mse-b0").is_err());
    assert_eq!(TensorConfig::parse("a\0b").unwrap_err().status(), Status::InvalidArgument);

    let mut nan = values.clone();
    nan[100] = f32::NAN;
    let e = encode_block(&method, &TensorRef::new(&nan, [2, 16, 64]).unwrap(), Default::default())
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidValue);
    let huge = vec![1e6f32; 64];
    let raw = encode_block(&TensorConfig::parse("raw-f32").unwrap(),
                           &TensorRef::new(&huge, [1, 1, 64]).unwrap(), Default::default()).unwrap();
    assert_eq!(decode_block::<F16>(&raw).unwrap_err().status(), Status::InvalidValue);
    let odd = TensorRef::new(&values[..2 * 16 * 5], [2, 16, 5]).unwrap();
    assert_eq!(encode_block(&method, &odd, Default::default()).unwrap_err().status(),
               Status::InvalidArgument);
}

#[test]
fn streams() {
    let shape = [3usize, 2, 40, 64];
    let count: usize = shape.iter().product();
    let keys = sample(count, 7);
    let values: Vec<F16> = convert(&sample(count, 8));
    let config = Config::preset("tq-mse-b4").unwrap();
    let options = StreamOptions {
        threads: 2,
        block_tokens: 16,
        rope_layout: RopeLayout::SplitHalf,
        position_offset: 7,
        rope_base: 10000.0,
    };
    let k = TensorRef::new(&keys, shape).unwrap();
    let v = TensorRef::new(&values, shape).unwrap();
    let stream = encode_stream(&config, &k, &v, &options).unwrap();
    let one_thread = StreamOptions { threads: 1, ..options };
    assert_eq!(encode_stream(&config, &k, &v, &one_thread).unwrap(), stream);

    let info = stream_info(&stream).unwrap();
    assert_eq!((info.format_major, info.format_minor), (1, 0));
    assert_eq!(info.shape(), shape);
    assert_eq!(info.dtype, Some(DType::F32));
    assert_eq!((info.rope_layout, info.position_offset, info.rope_base),
               (RopeLayout::SplitHalf, 7, 10000.0));
    let mut total = 0;
    for layer in 0..3 {
        let l = stream_layer(&stream, layer).unwrap();
        assert_eq!(l.keys.text().unwrap(), "tq-mse-b4");
        total += l.keys_bytes + l.values_bytes;
    }
    assert!(total < stream.len() as u64);
    assert_eq!(stream_layer(&stream, 3).unwrap_err().status(), Status::InvalidArgument);

    let (dk, dv) = decode_stream::<f32>(&stream, 0).unwrap();
    assert_eq!(dk.shape, shape);
    assert!(rel_mse(&keys, &dk.data) < 0.02);
    assert!(rel_mse(&widen(&values), &dv.data) < 0.02);
    let mut only_values = vec![BF16::default(); count];
    decode_stream_into::<f32, BF16>(&stream, None,
                                    Some(&mut TensorMut::new(&mut only_values, shape).unwrap()), 1)
        .unwrap();
    assert_eq!(only_values, convert::<BF16>(&dv.data));
    assert_eq!(decode_stream::<f32>(&stream[..stream.len() - 1], 0).unwrap_err().status(),
               Status::Truncated);
    let short = TensorRef::new(&keys[..count / 3], [1, 2, 40, 64]).unwrap();
    assert_eq!(encode_stream(&config, &short, &v, &options).unwrap_err().status(),
               Status::ShapeMismatch);
}

#[test]
fn threads_share_a_config() {
    let config = Arc::new(Config::preset("tq-3.5").unwrap());
    let inputs: Vec<Vec<f32>> = (0..8).map(|s| sample(2 * 64 * 128, 100 + s)).collect();
    let encode = |config: &Config, x: &[f32]| {
        let method = config.layer(0, 1, Kind::Keys).unwrap();
        encode_block(&method, &TensorRef::new(x, [2, 64, 128]).unwrap(), Default::default()).unwrap()
    };
    let expected: Vec<Vec<u8>> = inputs.iter().map(|x| encode(&config, x)).collect();
    let handles: Vec<_> = inputs
        .into_iter()
        .map(|x| {
            let config = Arc::clone(&config);
            std::thread::spawn(move || encode(&config, &x))
        })
        .collect();
    let results: Vec<Vec<u8>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results, expected);
}
