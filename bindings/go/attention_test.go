package kvcodec

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// The library accumulates in float32 (issue 8: within 1e-5 relative of
// decode-then-compute); this leaves a margin and is far below what a wrong
// head, token or layout gives.
const attentionRtol = 1e-4

func norm(x []float32) float64 {
	var sum float64
	for _, v := range x {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum)
}

func dot(a, b []float32) float64 {
	var sum float64
	for i := range a {
		sum += float64(a[i]) * float64(b[i])
	}
	return sum
}

// span is a half-open range [lo, hi).
type span struct{ lo, hi int }

// encodePart encodes heads x tokens of x ([allHeads, allTokens, dim]) as a
// block of layer 1 whose head 0 and token 0 are the cache's origin.
func encodePart(t *testing.T, x []float32, shape [3]int, method string, kind Kind,
	heads, tokens span, origin [2]uint32) []byte {
	t.Helper()
	dim := shape[2]
	var part []float32
	for h := heads.lo; h < heads.hi; h++ {
		for tok := tokens.lo; tok < tokens.hi; tok++ {
			part = append(part, x[(h*shape[1]+tok)*dim:][:dim]...)
		}
	}
	at := BlockPosition{Layer: 1, Kind: kind, HeadStart: origin[0] + uint32(heads.lo),
		TokenStart: origin[1] + uint32(tokens.lo)}
	return must(EncodeBlock(must(ParseTensorConfig(method)),
		NewTensor(part, heads.hi-heads.lo, tokens.hi-tokens.lo, dim), at))
}

// assemble decodes the blocks and places them by their headers into
// [heads, tokens, dim]; it returns that, its shape and the first token.
func assemble(t *testing.T, blocks *BlockList) ([]float32, [3]int, int) {
	t.Helper()
	h0, t0, hEnd, tEnd := math.MaxInt, math.MaxInt, 0, 0
	infos := make([]BlockInfo, blocks.Len())
	for i := range infos {
		infos[i] = must(GetBlockInfo(blocks.Block(i)))
		p := infos[i].Position
		h0, t0 = min(h0, int(p.HeadStart)), min(t0, int(p.TokenStart))
		hEnd = max(hEnd, int(p.HeadStart)+infos[i].HeadCount)
		tEnd = max(tEnd, int(p.TokenStart)+infos[i].TokenCount)
	}
	shape := [3]int{hEnd - h0, tEnd - t0, infos[0].HeadDim}
	dim := shape[2]
	whole := make([]float32, shape[0]*shape[1]*dim)
	filled := make([]bool, shape[0]*shape[1])
	for i, info := range infos {
		decoded := must(DecodeBlock[float32](blocks.Block(i))).Data
		for h := 0; h < info.HeadCount; h++ {
			for tok := 0; tok < info.TokenCount; tok++ {
				row := (int(info.Position.HeadStart)-h0+h)*shape[1] + int(info.Position.TokenStart) - t0 + tok
				copy(whole[row*dim:][:dim], decoded[(h*info.TokenCount+tok)*dim:][:dim])
				filled[row] = true
			}
		}
	}
	for _, f := range filled {
		if !f {
			t.Fatal("the test's blocks leave a gap")
		}
	}
	return whole, shape, t0
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// checkAttention compares out and lse with decode-then-compute in float64,
// within the bounds of the C tests: a value vector's norm for outputs, the
// logits' scale for lse.
func checkAttention(t *testing.T, keys, values *BlockList, queries []float32, scale float64,
	begin, end int, out, lse []float32) {
	t.Helper()
	k, shape, t0 := assemble(t, keys)
	v, _, _ := assemble(t, values)
	heads, tokens, dim := shape[0], shape[1], shape[2]
	lo, hi := max(begin, t0)-t0, tokens
	if end != 0 {
		hi = end - t0
	}
	numQueryHeads := len(queries) / dim
	if len(out) != len(queries) || len(lse) != numQueryHeads {
		t.Fatalf("out has %d floats, lse %d", len(out), len(lse))
	}
	group := numQueryHeads / heads
	for j := 0; j < numQueryHeads; j++ {
		h, q := j/group, queries[j*dim:][:dim]
		key := func(tok int) []float32 { return k[(h*tokens+tok)*dim:][:dim] }
		value := func(tok int) []float32 { return v[(h*tokens+tok)*dim:][:dim] }
		top := math.Inf(-1)
		for tok := lo; tok < hi; tok++ {
			top = math.Max(top, scale*dot(q, key(tok)))
		}
		weights := make([]float64, hi-lo)
		var total, vNorm, kNorm float64
		for tok := lo; tok < hi; tok++ {
			weights[tok-lo] = math.Exp(scale*dot(q, key(tok)) - top)
			total += weights[tok-lo]
			vNorm, kNorm = math.Max(vNorm, norm(value(tok))), math.Max(kNorm, norm(key(tok)))
		}
		for i := 0; i < dim; i++ {
			var exact float64
			for tok := lo; tok < hi; tok++ {
				exact += weights[tok-lo] * float64(value(tok)[i])
			}
			exact /= total
			if got := float64(out[j*dim+i]); math.Abs(got-exact) > attentionRtol*vNorm {
				t.Fatalf("query head %d, dim %d: %v, decode-then-compute %v", j, i, got, exact)
			}
		}
		exact := top + math.Log(total)
		bound := attentionRtol * (1 + math.Abs(scale)*norm(q)*kNorm)
		if math.Abs(float64(lse[j])-exact) > bound {
			t.Fatalf("lse of query head %d: %v, decode-then-compute %v", j, lse[j], exact)
		}
	}
}

func TestBlockAttendMatchesADirectComputation(t *testing.T) {
	heads, tokens, dim, perHead := 2, 40, 128, 3
	values := sample(heads*tokens*dim, 1)
	weights := sample(heads*perHead*tokens, 2)
	for _, preset := range Presets() {
		config := must(PresetConfig(preset.Name))
		method := must(config.Layer(0, 1, Values))
		config.Close()
		block := must(EncodeBlock(method, NewTensor(values, heads, tokens, dim),
			BlockPosition{Kind: Values}))
		decoded := must(DecodeBlock[float32](block)).Data
		out := must(BlockAttend(block, weights, perHead))
		if len(out) != heads*perHead*dim {
			t.Fatalf("%s: %d floats", preset.Name, len(out))
		}
		for h := 0; h < heads; h++ {
			for q := 0; q < perHead; q++ {
				w := weights[(h*perHead+q)*tokens:][:tokens]
				v := func(tok int) []float32 { return decoded[(h*tokens+tok)*dim:][:dim] }
				var bound float64
				for tok := 0; tok < tokens; tok++ {
					bound += math.Abs(float64(w[tok])) * norm(v(tok))
				}
				for i := 0; i < dim; i++ {
					var exact float64
					for tok := 0; tok < tokens; tok++ {
						exact += float64(w[tok]) * float64(v(tok)[i])
					}
					got := float64(out[(h*perHead+q)*dim+i])
					if math.Abs(got-exact) > attentionRtol*bound {
						t.Fatalf("%s: head %d query %d dim %d: %v vs %v", preset.Name, h, q, i,
							got, exact)
					}
				}
			}
		}
		_, err := BlockAttend(block, weights[1:], perHead)
		if !errors.Is(err, InvalidArgument) || !strings.Contains(err.Error(), "weights") {
			t.Fatalf("%s: short weights gave %v", preset.Name, err)
		}
	}
}

func TestDecodeAttentionEveryPreset(t *testing.T) {
	heads, tokens, dim := 2, 48, 128
	shape := [3]int{heads, tokens, dim}
	k, v := sample(heads*tokens*dim, 3), sample(heads*tokens*dim, 4)
	queries := sample(4*heads*dim, 5) // 4 query heads per KV head
	all := [2]span{{0, heads}, {0, tokens}}
	for _, preset := range Presets() {
		config := must(PresetConfig(preset.Name))
		kMethod := must(config.Layer(1, 4, Keys)).String()
		vMethod := must(config.Layer(1, 4, Values)).String()
		config.Close()
		keys := NewBlockList(encodePart(t, k, shape, kMethod, Keys, all[0], all[1], [2]uint32{}))
		values := NewBlockList(encodePart(t, v, shape, vMethod, Values, all[0], all[1], [2]uint32{}))
		out, lse, err := DecodeAttention(keys, values, queries, nil)
		if err != nil {
			t.Fatalf("%s: %v", preset.Name, err)
		}
		checkAttention(t, keys, values, queries, 1/math.Sqrt(float64(dim)), 0, 0, out, lse)
	}
}

func TestDecodeAttentionSeveralBlocksGQAAndRanges(t *testing.T) {
	// KV heads 2-4 of layer 1, tokens 100-171: keys split by tokens (given
	// out of order), values by heads and differently by tokens.
	heads, tokens, dim := 3, 72, 64
	shape := [3]int{heads, tokens, dim}
	k, v := sample(heads*tokens*dim, 6), sample(heads*tokens*dim, 7)
	origin := [2]uint32{2, 100}
	keys := NewBlockList(
		encodePart(t, k, shape, "tq-mse-b4", Keys, span{0, 3}, span{40, 72}, origin),
		encodePart(t, k, shape, "tq-mse-b4", Keys, span{0, 3}, span{0, 16}, origin),
		encodePart(t, k, shape, "tq-prod-b3", Keys, span{0, 3}, span{16, 40}, origin))
	values := NewBlockList(
		encodePart(t, v, shape, "tq-mse-b3", Values, span{0, 1}, span{0, 72}, origin),
		encodePart(t, v, shape, "polar-4222", Values, span{1, 3}, span{50, 72}, origin))
	values.Append(encodePart(t, v, shape, "tq-mse-b3", Values, span{1, 3}, span{0, 50}, origin))
	cases := []AttentionOptions{{}, {Scale: 0.3, TokenBegin: 110, TokenEnd: 160},
		{Scale: -0.05, TokenBegin: 140}, {Scale: 2, TokenEnd: 101}}
	for _, group := range []int{1, 2, 4} {
		queries := sample(heads*group*dim, uint64(8+group))
		for _, options := range cases {
			for _, threads := range []uint32{1, 2} {
				options.Threads = threads
				out, lse, err := DecodeAttention(keys, values, queries, &options)
				if err != nil {
					t.Fatalf("group %d, %+v: %v", group, options, err)
				}
				scale := float64(options.Scale)
				if scale == 0 {
					scale = 1 / math.Sqrt(float64(dim))
				}
				checkAttention(t, keys, values, queries, scale, int(options.TokenBegin),
					int(options.TokenEnd), out, lse)
				// Deterministic for a given thread count.
				again, _, _ := DecodeAttention(keys, values, queries, &options)
				if !reflect.DeepEqual(out, again) {
					t.Fatalf("group %d, %+v: two runs differ", group, options)
				}
				// Skipping the checksums changes nothing on intact blocks.
				trusted := options
				trusted.TrustedBlocks = true
				if again, _, _ := DecodeAttention(keys, values, queries, &trusted); !reflect.DeepEqual(out, again) {
					t.Fatalf("group %d, %+v: trusted blocks give another result", group, options)
				}
			}
		}
	}
}

func TestDecodeAttentionErrors(t *testing.T) {
	heads, tokens, dim := 2, 32, 64
	shape := [3]int{heads, tokens, dim}
	k, v := sample(heads*tokens*dim, 12), sample(heads*tokens*dim, 13)
	all, none := span{0, 2}, [2]uint32{}
	first := encodePart(t, k, shape, "tq-mse-b4", Keys, all, span{0, 16}, none)
	second := encodePart(t, k, shape, "tq-mse-b4", Keys, all, span{16, 32}, none)
	keys := NewBlockList(first, second)
	values := NewBlockList(encodePart(t, v, shape, "tq-mse-b4", Values, all, span{0, 32}, none))
	queries := sample(4*dim, 14)
	status := func(keys, values *BlockList, queries []float32, options *AttentionOptions) Status {
		t.Helper()
		_, _, err := DecodeAttention(keys, values, queries, options)
		var e *Error
		if !errors.As(err, &e) || e.Message == "" {
			t.Fatalf("expected an error with a message, got %v", err)
		}
		return e.Status
	}
	shapeError := func(s Status) {
		t.Helper()
		if s != InvalidArgument && s != ShapeMismatch {
			t.Fatalf("status %v, expected a shape error", s.Name())
		}
	}
	// 3 query heads for 2 KV heads.
	shapeError(status(keys, values, queries[:3*dim], nil))
	// Values cover fewer tokens; a token missing from the keys; a block twice.
	shapeError(status(keys, NewBlockList(encodePart(t, v, shape, "tq-mse-b4", Values, all,
		span{0, 24}, none)), queries, nil))
	shapeError(status(NewBlockList(first, encodePart(t, k, shape, "tq-mse-b4", Keys, all,
		span{17, 32}, none)), values, queries, nil))
	shapeError(status(NewBlockList(first, second, second), values, queries, nil))
	// Values as keys.
	shapeError(status(values, values, queries, nil))
	// Token ranges that are empty or after the blocks' tokens.
	if s := status(keys, values, queries, &AttentionOptions{TokenBegin: 20, TokenEnd: 10}); s != InvalidArgument {
		t.Fatalf("empty range: %v", s.Name())
	}
	if s := status(keys, values, queries, &AttentionOptions{TokenBegin: 40}); s != InvalidArgument {
		t.Fatalf("range after the blocks: %v", s.Name())
	}
	// No key blocks (also a nil list); a damaged block; a NaN scale.
	if s := status(nil, values, queries, nil); s != InvalidArgument {
		t.Fatalf("no key blocks: %v", s.Name())
	}
	damaged := append([]byte(nil), second...)
	damaged[len(damaged)/2] ^= 1
	if s := status(NewBlockList(first, damaged), values, queries, nil); s != Checksum {
		t.Fatalf("damaged block: %v", s.Name())
	}
	// Trusted blocks are not checksummed: the damage is no checksum error.
	_, _, err := DecodeAttention(NewBlockList(first, damaged), values, queries,
		&AttentionOptions{TrustedBlocks: true})
	if errors.Is(err, Checksum) {
		t.Fatalf("trusted blocks were checksummed: %v", err)
	}
	nan := &AttentionOptions{Scale: float32(math.NaN())}
	if s := status(keys, values, queries, nan); s != InvalidArgument {
		t.Fatalf("NaN scale: %v", s.Name())
	}
	// What the binding checks itself.
	_, _, err = DecodeAttention(keys, values, queries[1:], nil)
	if !errors.Is(err, InvalidArgument) || !strings.Contains(err.Error(), "queries") {
		t.Fatalf("queries not a multiple of head_dim: %v", err)
	}
}
