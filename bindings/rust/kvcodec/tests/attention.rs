//! Attention on encoded blocks (block_attend, decode_attention) against the
//! same computation in f64 on the decoded blocks: every preset, GQA, several
//! blocks in any order, token ranges, lse, and mismatched shapes.
use kvcodec::*;

/// The library accumulates in f32 (issue 8: within 1e-5 relative of
/// decode-then-compute); this leaves a margin and is far below what a wrong
/// head, token or layout gives.
const RTOL: f64 = 1e-4;

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

fn norm(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Heads `heads` x tokens `tokens` of `x` ([all_heads, all_tokens, dim]) as
/// a block of layer 1, whose head 0 and token 0 are the cache's `origin`.
fn encode(x: &[f32], shape: [usize; 3], method: &str, kind: Kind, heads: std::ops::Range<usize>,
          tokens: std::ops::Range<usize>, origin: (u32, u32)) -> Vec<u8> {
    let [_, all_tokens, dim] = shape;
    let mut part = Vec::new();
    for h in heads.clone() {
        for t in tokens.clone() {
            part.extend_from_slice(&x[(h * all_tokens + t) * dim..][..dim]);
        }
    }
    let view = TensorRef::new(&part, [heads.len(), tokens.len(), dim]).unwrap();
    let position = BlockPosition { layer: 1, kind, head_start: origin.0 + heads.start as u32,
                                   token_start: origin.1 + tokens.start as u32 };
    encode_block(&TensorConfig::parse(method).unwrap(), &view, position).unwrap()
}

/// The blocks decoded and placed by their headers into [heads, tokens, dim],
/// with the first head and token.
fn assemble(blocks: &[Vec<u8>]) -> (Vec<f32>, [usize; 3], usize) {
    let infos: Vec<BlockInfo> = blocks.iter().map(|b| block_info(b).unwrap()).collect();
    let h0 = infos.iter().map(|i| i.position.head_start as usize).min().unwrap();
    let t0 = infos.iter().map(|i| i.position.token_start as usize).min().unwrap();
    let heads = infos.iter().map(|i| i.position.head_start as usize + i.head_count).max().unwrap() - h0;
    let tokens = infos.iter().map(|i| i.position.token_start as usize + i.token_count).max().unwrap() - t0;
    let dim = infos[0].head_dim;
    let mut whole = vec![f32::NAN; heads * tokens * dim];
    for (block, info) in blocks.iter().zip(&infos) {
        let decoded = decode_block::<f32>(block).unwrap().data;
        for h in 0..info.head_count {
            for t in 0..info.token_count {
                let to = ((info.position.head_start as usize - h0 + h) * tokens
                    + info.position.token_start as usize - t0 + t) * dim;
                whole[to..to + dim].copy_from_slice(&decoded[(h * info.token_count + t) * dim..][..dim]);
            }
        }
    }
    assert!(whole.iter().all(|v| !v.is_nan()), "the test's blocks leave a gap");
    (whole, [heads, tokens, dim], t0)
}

/// Decode-then-compute in f64, compared with `got` within the bounds of the
/// C tests: a value vector's norm for outputs, the logits' scale for lse.
fn check_attention(keys: &[Vec<u8>], values: &[Vec<u8>], queries: &[f32], scale: f64,
                   begin: usize, end: usize, got: &Attention) {
    let (k, [heads, tokens, dim], t0) = assemble(keys);
    let (v, _, _) = assemble(values);
    let lo = begin.max(t0) - t0;
    let hi = if end == 0 { tokens } else { end - t0 };
    let num_query_heads = queries.len() / dim;
    assert_eq!(got.out.shape, [num_query_heads, dim]);
    assert_eq!(got.lse.len(), num_query_heads);
    let group = num_query_heads / heads;
    for j in 0..num_query_heads {
        let (h, q) = (j / group, &queries[j * dim..][..dim]);
        let key = |t: usize| &k[(h * tokens + t) * dim..][..dim];
        let value = |t: usize| &v[(h * tokens + t) * dim..][..dim];
        let logits: Vec<f64> = (lo..hi).map(|t| scale * dot(q, key(t))).collect();
        let top = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
        let total: f64 = weights.iter().sum();
        let v_norm = (lo..hi).map(|t| norm(value(t))).fold(0.0, f64::max);
        let k_norm = (lo..hi).map(|t| norm(key(t))).fold(0.0, f64::max);
        for i in 0..dim {
            let exact: f64 = (lo..hi).zip(&weights).map(|(t, w)| w * value(t)[i] as f64).sum::<f64>() / total;
            let out = got.out.data[j * dim + i] as f64;
            assert!((out - exact).abs() <= RTOL * v_norm, "head {} dim {}: {} vs {}", j, i, out, exact);
        }
        let lse = top + total.ln();
        let bound = RTOL * (1.0 + scale.abs() * norm(q) * k_norm);
        assert!((got.lse[j] as f64 - lse).abs() <= bound, "lse of head {}: {} vs {}", j, got.lse[j], lse);
    }
}

#[test]
fn block_attend_matches_a_direct_computation() {
    let (heads, tokens, dim, per_head) = (2usize, 40usize, 128usize, 3usize);
    let values = sample(heads * tokens * dim, 1);
    let weights = sample(heads * per_head * tokens, 2);
    for preset in presets() {
        let method = Config::preset(preset.name).unwrap().layer(0, 1, Kind::Values).unwrap();
        let position = BlockPosition { kind: Kind::Values, ..Default::default() };
        let block = encode_block(&method, &TensorRef::new(&values, [heads, tokens, dim]).unwrap(),
                                 position).unwrap();
        let decoded = decode_block::<f32>(&block).unwrap().data;
        let out = block_attend(&block, &weights, per_head).unwrap();
        assert_eq!(out.shape, [heads, per_head, dim]);
        for h in 0..heads {
            for q in 0..per_head {
                let w = &weights[(h * per_head + q) * tokens..][..tokens];
                let v = |t: usize| &decoded[(h * tokens + t) * dim..][..dim];
                let bound: f64 = (0..tokens).map(|t| (w[t] as f64).abs() * norm(v(t))).sum();
                for i in 0..dim {
                    let exact: f64 = (0..tokens).map(|t| w[t] as f64 * v(t)[i] as f64).sum();
                    let got = out.data[(h * per_head + q) * dim + i] as f64;
                    assert!((got - exact).abs() <= RTOL * bound, "{}: {} vs {}", preset.name, got, exact);
                }
            }
        }
        let e = block_attend(&block, &weights[1..], per_head).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
        assert!(e.message().contains("weights"));
    }
}

#[test]
fn decode_attention_every_preset() {
    let (heads, tokens, dim) = (2usize, 48usize, 128usize);
    let shape = [heads, tokens, dim];
    let (k, v) = (sample(heads * tokens * dim, 3), sample(heads * tokens * dim, 4));
    let queries = sample(4 * heads * dim, 5); // 4 query heads per KV head
    for preset in presets() {
        let config = Config::preset(preset.name).unwrap();
        let k_method = config.layer(1, 4, Kind::Keys).unwrap().text().unwrap();
        let v_method = config.layer(1, 4, Kind::Values).unwrap().text().unwrap();
        let keys = vec![encode(&k, shape, &k_method, Kind::Keys, 0..heads, 0..tokens, (0, 0))];
        let values = vec![encode(&v, shape, &v_method, Kind::Values, 0..heads, 0..tokens, (0, 0))];
        let got = decode_attention(&keys, &values, &queries, &AttentionOptions::default()).unwrap();
        check_attention(&keys, &values, &queries, 1.0 / (dim as f64).sqrt(), 0, 0, &got);
    }
}

#[test]
fn decode_attention_several_blocks_gqa_and_ranges() {
    // KV heads 2-4 of layer 1, tokens 100-171: keys split by tokens (given
    // out of order), values by heads and differently by tokens.
    let (heads, tokens, dim) = (3usize, 72usize, 64usize);
    let shape = [heads, tokens, dim];
    let (k, v) = (sample(heads * tokens * dim, 6), sample(heads * tokens * dim, 7));
    let keys = vec![
        encode(&k, shape, "tq-mse-b4", Kind::Keys, 0..3, 40..72, (2, 100)),
        encode(&k, shape, "tq-mse-b4", Kind::Keys, 0..3, 0..16, (2, 100)),
        encode(&k, shape, "tq-prod-b3", Kind::Keys, 0..3, 16..40, (2, 100)),
    ];
    let values = vec![
        encode(&v, shape, "tq-mse-b3", Kind::Values, 0..1, 0..72, (2, 100)),
        encode(&v, shape, "polar-4222", Kind::Values, 1..3, 50..72, (2, 100)),
        encode(&v, shape, "tq-mse-b3", Kind::Values, 1..3, 0..50, (2, 100)),
    ];
    for group in [1usize, 2, 4] {
        let queries = sample(heads * group * dim, 8 + group as u64);
        for (scale, begin, end) in [(None, 0u32, 0u32), (Some(0.3f32), 110, 160),
                                    (Some(-0.05), 140, 0), (Some(2.0), 0, 101)] {
            for threads in [1u32, 2] {
                let options = AttentionOptions { threads, scale, token_begin: begin, token_end: end,
                                                ..Default::default() };
                let got = decode_attention(&keys, &values, &queries, &options).unwrap();
                let s = scale.map(|s| s as f64).unwrap_or(1.0 / (dim as f64).sqrt());
                check_attention(&keys, &values, &queries, s, begin as usize, end as usize, &got);
                // Deterministic for a given thread count.
                assert_eq!(got, decode_attention(&keys, &values, &queries, &options).unwrap());
                // Skipping the checksums changes nothing on intact blocks.
                let trusted = AttentionOptions { trusted_blocks: true, ..options };
                assert_eq!(got, decode_attention(&keys, &values, &queries, &trusted).unwrap());
            }
        }
    }
    // Slices of slices work as well as vectors of vectors.
    let borrowed: Vec<&[u8]> = keys.iter().map(|b| b.as_slice()).collect();
    let queries = sample(heads * dim, 20);
    assert_eq!(decode_attention(&borrowed, &values, &queries, &AttentionOptions::default()).unwrap(),
               decode_attention(&keys, &values, &queries, &AttentionOptions::default()).unwrap());
}

#[test]
fn decode_attention_errors() {
    let (heads, tokens, dim) = (2usize, 32usize, 64usize);
    let shape = [heads, tokens, dim];
    let (k, v) = (sample(heads * tokens * dim, 12), sample(heads * tokens * dim, 13));
    let keys = vec![encode(&k, shape, "tq-mse-b4", Kind::Keys, 0..2, 0..16, (0, 0)),
                    encode(&k, shape, "tq-mse-b4", Kind::Keys, 0..2, 16..32, (0, 0))];
    let values = vec![encode(&v, shape, "tq-mse-b4", Kind::Values, 0..2, 0..32, (0, 0))];
    let queries = sample(4 * dim, 14);
    let defaults = AttentionOptions::default();
    let status = |keys: &[Vec<u8>], values: &[Vec<u8>], queries: &[f32], options: &AttentionOptions| {
        let e = decode_attention(keys, values, queries, options).unwrap_err();
        assert!(!e.message().is_empty(), "{:?} without a message", e.status());
        e.status()
    };
    let shape_error = |s: Status| s == Status::InvalidArgument || s == Status::ShapeMismatch;
    // 3 query heads for 2 KV heads.
    assert!(shape_error(status(&keys, &values, &queries[..3 * dim], &defaults)));
    // Values cover fewer tokens; a token missing from the keys; a block twice.
    let short = vec![encode(&v, shape, "tq-mse-b4", Kind::Values, 0..2, 0..24, (0, 0))];
    assert!(shape_error(status(&keys, &short, &queries, &defaults)));
    let gap = vec![keys[0].clone(), encode(&k, shape, "tq-mse-b4", Kind::Keys, 0..2, 17..32, (0, 0))];
    assert!(shape_error(status(&gap, &values, &queries, &defaults)));
    let twice = vec![keys[0].clone(), keys[1].clone(), keys[1].clone()];
    assert!(shape_error(status(&twice, &values, &queries, &defaults)));
    // Values as keys.
    assert!(shape_error(status(&values, &values, &queries, &defaults)));
    // Token ranges that are empty or after the blocks' tokens.
    let range = |token_begin, token_end| AttentionOptions { token_begin, token_end, ..defaults };
    assert_eq!(status(&keys, &values, &queries, &range(20, 10)), Status::InvalidArgument);
    assert_eq!(status(&keys, &values, &queries, &range(40, 0)), Status::InvalidArgument);
    // No key blocks; a damaged one.
    assert_eq!(status(&[], &values, &queries, &defaults), Status::InvalidArgument);
    let mut damaged = keys.clone();
    let middle = damaged[1].len() / 2;
    damaged[1][middle] ^= 1;
    assert_eq!(status(&damaged, &values, &queries, &defaults), Status::Checksum);
    // Trusted blocks are not checksummed: the damage is no checksum error.
    let trusted = AttentionOptions { trusted_blocks: true, ..defaults };
    if let Err(e) = decode_attention(&damaged, &values, &queries, &trusted) {
        assert_ne!(e.status(), Status::Checksum);
    }
    let nan = AttentionOptions { scale: Some(f32::NAN), ..defaults };
    assert_eq!(status(&keys, &values, &queries, &nan), Status::InvalidArgument);

    // What the binding checks itself.
    let e = decode_attention(&keys, &values, &queries[1..], &defaults).unwrap_err();
    assert!(e.status() == Status::InvalidArgument && e.message().contains("queries"));
    let zero = AttentionOptions { scale: Some(0.0), ..defaults };
    let e = decode_attention(&keys, &values, &queries, &zero).unwrap_err();
    assert!(e.status() == Status::InvalidArgument && e.message().contains("scale"));
}

/// Runs the jobs on three scoped threads, last index first.
struct ScopedPool;
impl Runner for ScopedPool {
    fn run(&self, count: usize, job: &(dyn Fn(usize) + Sync)) {
        let next = std::sync::atomic::AtomicUsize::new(count);
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| loop {
                    let left = next.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    if left == 0 || left > count {
                        break;
                    }
                    job(left - 1);
                });
            }
        });
    }
}

/// Skips the last job.
struct SkippingPool;
impl Runner for SkippingPool {
    fn run(&self, count: usize, job: &(dyn Fn(usize) + Sync)) {
        (0..count.saturating_sub(1)).for_each(job);
    }
}

/// Panics before running any job.
struct PanickingPool;
impl Runner for PanickingPool {
    fn run(&self, _: usize, _: &(dyn Fn(usize) + Sync)) {
        panic!("the pool is shutting down");
    }
}

#[test]
fn decode_attention_on_a_runner() {
    // 9000 tokens: several chunks, so several jobs a round.
    let (heads, tokens, dim) = (2usize, 9000usize, 64usize);
    let shape = [heads, tokens, dim];
    let (k, v) = (sample(heads * tokens * dim, 30), sample(heads * tokens * dim, 31));
    let keys = vec![encode(&k, shape, "tq-mse-b2", Kind::Keys, 0..2, 0..5000, (0, 0)),
                    encode(&k, shape, "tq-mse-b2", Kind::Keys, 0..2, 5000..9000, (0, 0))];
    let values = vec![encode(&v, shape, "tq-mse-b3", Kind::Values, 0..2, 0..9000, (0, 0))];
    let queries = sample(heads * 4 * dim, 32);
    let one = AttentionOptions { threads: 1, ..Default::default() };
    let expected = decode_attention(&keys, &values, &queries, &one).unwrap();
    for trusted_blocks in [false, true] {
        let options = AttentionOptions { trusted_blocks, ..one };
        assert_eq!(decode_attention_on(&ScopedPool, &keys, &values, &queries, &options).unwrap(),
                   expected);
    }
    for runner in [&SkippingPool as &dyn Runner, &PanickingPool] {
        let err = decode_attention_on(runner, &keys, &values, &queries, &one).unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument);
        assert!(err.to_string().contains("parallel runner"), "{}", err);
    }
}
