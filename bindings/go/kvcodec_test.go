package kvcodec

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
)

// sample gives deterministic values in [-2, 2) (SplitMix64).
func sample(count int, seed uint64) []float32 {
	values := make([]float32, count)
	state := seed
	for i := range values {
		state += 0x9E3779B97F4A7C15
		z := state
		z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		z ^= z >> 31
		values[i] = float32(z>>40)/float32(1<<22) - 2
	}
	return values
}

// must unwraps a result; an error fails the test (as a panic, with its stack).
func must[T any](value T, err error) T {
	if err != nil {
		panic(err)
	}
	return value
}

// convert gives the values (a multiple of 8 of them) as the library converts
// them: a raw-f32 block decoded as T.
func convert[T Element](t *testing.T, values []float32) []T {
	t.Helper()
	raw := must(ParseTensorConfig("raw-f32"))
	block := must(EncodeBlock(raw, NewTensor(values, 1, len(values)/8, 8), BlockPosition{}))
	return must(DecodeBlock[T](block)).Data
}

func widen[T Element](t *testing.T, values []T) []float32 {
	t.Helper()
	raw := must(ParseTensorConfig("raw-f32"))
	block := must(EncodeBlock(raw, NewTensor(values, 1, len(values)/8, 8), BlockPosition{}))
	return must(DecodeBlock[float32](block)).Data
}

func relMSE(a, b []float32) float64 {
	var errorSum, energy float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		errorSum += d * d
		energy += float64(a[i]) * float64(a[i])
	}
	return errorSum / energy
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestVersionAndPresets(t *testing.T) {
	if !strings.HasPrefix(Version(), "0.2.") || SIMDTarget() == "" {
		t.Fatal(Version(), SIMDTarget())
	}
	found := false
	for _, p := range Presets() {
		found = found || p.Name == "tq-mse-b4" && strings.Contains(p.Description, "TurboQuant")
	}
	if !found {
		t.Fatal("no tq-mse-b4 preset")
	}
}

var shape = []int{2, 24, 64}

func roundTrip[T Element](t *testing.T, preset string, values []float32) {
	input := convert[T](t, values)
	exact := widen(t, input)
	config := must(PresetConfig(preset))
	defer config.Close()
	method := must(config.Layer(1, 2, Values))
	at := BlockPosition{Layer: 1, Kind: Values, HeadStart: 3, TokenStart: 64}
	block := must(EncodeBlock(method, NewTensor(input, shape...), at))
	// Every dtype is read as f32: the same values give the same bytes.
	if !bytes.Equal(block, must(EncodeBlock(method, NewTensor(exact, shape...), at))) {
		t.Fatalf("%s: bytes differ from the f32 input's", preset)
	}
	info := must(GetBlockInfo(block))
	if info.Position != at || !equal(info.Shape(), shape) || info.Method != method {
		t.Fatalf("%s: info %+v", preset, info)
	}
	decoded := must(DecodeBlock[float32](block))
	if !equal(decoded.Shape, shape) || relMSE(exact, decoded.Data) > 0.7 { // tq-prod-b2: 0.58
		t.Fatalf("%s: shape %v, error %g", preset, decoded.Shape, relMSE(exact, decoded.Data))
	}
	if !equal(must(DecodeBlock[F16](block)).Data, convert[F16](t, decoded.Data)) ||
		!equal(must(DecodeBlock[BF16](block)).Data, convert[BF16](t, decoded.Data)) {
		t.Fatalf("%s: f16/bf16 outputs are not the f32 output converted", preset)
	}
}

func TestBlockRoundTripEveryPresetAndDtype(t *testing.T) {
	values := sample(2*24*64, 1)
	for _, p := range Presets() {
		roundTrip[float32](t, p.Name, values)
		roundTrip[F16](t, p.Name, values)
		roundTrip[BF16](t, p.Name, values)
	}
}

func TestHalfConversions(t *testing.T) {
	if F16(0x3C00).Float32() != 1 || F16(0xC000).Float32() != -2 ||
		F16(0x0001).Float32() != float32(math.Pow(2, -24)) || F16(0x7BFF).Float32() != 65504 ||
		!math.IsInf(float64(F16(0x7C00).Float32()), 1) || BF16(0x3F80).Float32() != 1 {
		t.Fatal("half conversions")
	}
	values := sample(4096, 9)
	for i, h := range convert[F16](t, values) {
		if d := math.Abs(float64(h.Float32() - values[i])); d > math.Abs(float64(values[i]))/2048+1e-7 {
			t.Fatal(i, h, values[i])
		}
	}
}

func TestStridedViews(t *testing.T) {
	// An engine's [tokens, heads, head_dim] buffer seen as [heads, tokens, head_dim].
	tokens, heads, dim := 40, 4, 64
	engine := sample(tokens*heads*dim, 2)
	view := Tensor[float32]{Data: engine, Shape: []int{heads, tokens, dim},
		Strides: []int{dim, heads * dim, 1}}
	var copied []float32
	for h := 0; h < heads; h++ {
		for tk := 0; tk < tokens; tk++ {
			copied = append(copied, engine[(tk*heads+h)*dim:][:dim]...)
		}
	}
	method := must(ParseTensorConfig("tq-mse-b3"))
	expected := must(EncodeBlock(method, NewTensor(copied, heads, tokens, dim), BlockPosition{}))
	if !bytes.Equal(must(EncodeBlock(method, view, BlockPosition{})), expected) {
		t.Fatal("strided input encodes differently")
	}
	// Heads in reverse order: a negative stride from an offset.
	reversed := Tensor[float32]{Data: copied, Shape: []int{heads, tokens, dim},
		Strides: []int{-tokens * dim, dim, 1}, Offset: (heads - 1) * tokens * dim}
	var flipped []float32
	for h := heads - 1; h >= 0; h-- {
		flipped = append(flipped, copied[h*tokens*dim:][:tokens*dim]...)
	}
	if !bytes.Equal(must(EncodeBlock(method, reversed, BlockPosition{})),
		must(EncodeBlock(method, NewTensor(flipped, heads, tokens, dim), BlockPosition{}))) {
		t.Fatal("negative strides encode differently")
	}
	// Decoding into the engine's layout.
	decoded := must(DecodeBlock[float32](expected))
	out := make([]float32, len(engine))
	outView := Tensor[float32]{Data: out, Shape: []int{heads, tokens, dim},
		Strides: []int{dim, heads * dim, 1}}
	if err := DecodeBlockInto(expected, outView); err != nil {
		t.Fatal(err)
	}
	for h := 0; h < heads; h++ {
		for tk := 0; tk < tokens; tk++ {
			if !equal(out[(tk*heads+h)*dim:][:dim], decoded.Data[(h*tokens+tk)*dim:][:dim]) {
				t.Fatal("strided output differs", h, tk)
			}
		}
	}
	// Views must stay inside their slice; all-zero strides are refused.
	small := make([]float32, 100)
	for _, bad := range []Tensor[float32]{
		NewTensor(small, 2, 2, 64),
		{Data: small, Shape: []int{2, 2, 4}, Strides: []int{-10, 4, 1}, Offset: 5},
		{Data: small, Shape: []int{2, 2, 4}, Strides: []int{0, 0, 0}},
		{Data: small, Shape: []int{2, 2, 2}, Strides: []int{math.MaxInt, math.MaxInt, 1}},
		{Data: small, Shape: []int{2, 2, 2}, Strides: []int{math.MinInt, 1, 1}, Offset: 99},
		{Data: small, Shape: []int{2, 4}},
	} {
		_, err := EncodeBlock(method, bad, BlockPosition{})
		if !errors.Is(err, InvalidArgument) {
			t.Fatalf("%+v: %v", bad, err)
		}
	}
	ok := Tensor[float32]{Data: small, Shape: []int{2, 2, 8}, Strides: []int{-10, 8, 1}, Offset: 10}
	if _, err := ok.view(3, "ok"); err != nil {
		t.Fatal(err)
	}
}

func TestScoresMatchADirectComputation(t *testing.T) {
	heads, tokens, dim, perHead := 2, 32, 128, 3
	values := sample(heads*tokens*dim, 3)
	queries := sample(heads*perHead*dim, 4)
	for _, p := range Presets() {
		config := must(PresetConfig(p.Name))
		method := must(config.Layer(0, 1, Keys))
		block := must(EncodeBlock(method, NewTensor(values, heads, tokens, dim), BlockPosition{}))
		decoded := must(DecodeBlock[float32](block)).Data
		scores := must(BlockScores(block, queries, perHead))
		for h := 0; h < heads; h++ {
			for q := 0; q < perHead; q++ {
				for tk := 0; tk < tokens; tk++ {
					exact := 0.0
					for d := 0; d < dim; d++ {
						exact += float64(queries[(h*perHead+q)*dim+d]) * float64(decoded[(h*tokens+tk)*dim+d])
					}
					got := float64(scores[(h*perHead+q)*tokens+tk])
					if math.Abs(got-exact) > 1e-4*(1+math.Abs(exact)) {
						t.Fatalf("%s: score %g, direct %g", p.Name, got, exact)
					}
				}
			}
		}
		if _, err := BlockScores(block, queries[1:], perHead); !errors.Is(err, InvalidArgument) {
			t.Fatal(err)
		}
		config.Close()
	}
}

func TestConfigs(t *testing.T) {
	config := must(ParseConfig("kvcodec-config 1\nall k=tq-mse-b3 v=tq-mse-b2\nfirst 1 kv=raw-f16\n"))
	text := must(config.Text())
	if again := must(ParseConfig(text)); must(again.Text()) != text {
		t.Fatal("config text does not round-trip")
	}
	if must(config.Layer(0, 4, Keys)).String() != "raw-f16" ||
		must(config.Layer(2, 4, Values)).String() != "tq-mse-b2" {
		t.Fatal("layer configs")
	}
	prod := must(ParseTensorConfig("tq-prod-b3:nc"))
	if err := config.SetLayer(2, Values, prod); err != nil {
		t.Fatal(err)
	}
	if must(config.Layer(2, 4, Values)) != prod {
		t.Fatal("set layer")
	}
	if _, err := config.Layer(4, 4, Keys); !errors.Is(err, InvalidArgument) {
		t.Fatal(err)
	}
	config.Close()
	if _, err := config.Text(); !errors.Is(err, InvalidArgument) {
		t.Fatal("closed config usable")
	}

	method := must(ParseTensorConfig("tq-mse-b4"))
	values := sample(8*64, 5)
	a := must(EncodeBlock(method, NewTensor(values, 1, 8, 64), BlockPosition{}))
	b := must(EncodeBlock(method.WithSeed(method.Seed()+1), NewTensor(values, 1, 8, 64), BlockPosition{}))
	if method.Bits() != 4 || bytes.Equal(a, b) {
		t.Fatal("seed")
	}
	invalid := method.WithBits(99)
	if _, err := invalid.Text(); err == nil || !strings.Contains(invalid.String(), "invalid") {
		t.Fatal("invalid config accepted")
	}
}

func TestErrorsCarryStatusAndDiagnostic(t *testing.T) {
	values := sample(2*16*64, 6)
	method := must(ParseTensorConfig("tq-mse-b4"))
	block := must(EncodeBlock(method, NewTensor(values, 2, 16, 64), BlockPosition{}))

	_, err := DecodeBlock[float32](block[:len(block)-3])
	var e *Error
	if !errors.As(err, &e) || e.Status != Truncated || e.Message == "" ||
		!strings.Contains(err.Error(), "KVC_ERR_TRUNCATED") {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), block...)
	flipped[len(flipped)/2] ^= 0x10
	if _, err := DecodeBlock[float32](flipped); !errors.Is(err, Checksum) {
		t.Fatal(err)
	}
	if _, err := GetBlockInfo([]byte("not kvcodec at all")); !errors.Is(err, NotKvcodec) {
		t.Fatal(err)
	}
	if _, err := GetBlockInfo(nil); err == nil {
		t.Fatal("empty input accepted")
	}
	if _, err := GetStreamInfo(block); !errors.Is(err, NotKvcodec) {
		t.Fatal(err)
	}
	if err := DecodeBlockInto(block, NewTensor(make([]float32, 2*17*64), 2, 17, 64)); !errors.Is(err, ShapeMismatch) {
		t.Fatal(err)
	}
	for text, want := range map[string]int32{"all kv=tq-mse-b3\nzstd 9\n": 9, "all kv=tq-mse-b3\n": 0} {
		if level, err := must(ParseConfig(text)).ZstdLevel(); err != nil || level != want {
			t.Fatal(text, level, err)
		}
	}
	if level, err := must(PresetConfig("kv-3.25z")).ZstdLevel(); err != nil || level != 3 {
		t.Fatal(level, err)
	}
	if _, err := PresetConfig("tq-mse-b9000"); !errors.As(err, &e) || e.Status != InvalidArgument ||
		!strings.Contains(e.Message, "tq-mse-b4") {
		t.Fatal(err)
	}
	if _, err := ParseConfig("not a config"); !errors.As(err, &e) || e.Message == "" {
		t.Fatal(err)
	}
	if _, err := ParseTensorConfig("tq-mse-b0"); err == nil {
		t.Fatal("tq-mse-b0 accepted")
	}
	nan := append([]float32(nil), values...)
	nan[100] = float32(math.NaN())
	if _, err := EncodeBlock(method, NewTensor(nan, 2, 16, 64), BlockPosition{}); !errors.Is(err, InvalidValue) {
		t.Fatal(err)
	}
	huge := make([]float32, 64)
	for i := range huge {
		huge[i] = 1e6
	}
	raw := must(EncodeBlock(must(ParseTensorConfig("raw-f32")), NewTensor(huge, 1, 1, 64), BlockPosition{}))
	if _, err := DecodeBlock[F16](raw); !errors.Is(err, InvalidValue) {
		t.Fatal(err)
	}
	if _, err := EncodeBlock(method, NewTensor(values[:2*16*5], 2, 16, 5), BlockPosition{}); !errors.Is(err, InvalidArgument) {
		t.Fatal(err)
	}
}

func TestStreams(t *testing.T) {
	shape4 := []int{3, 2, 40, 64}
	count := 3 * 2 * 40 * 64
	keys := sample(count, 7)
	values := convert[F16](t, sample(count, 8))
	config := must(PresetConfig("tq-mse-b4"))
	defer config.Close()
	options := StreamOptions{Threads: 2, BlockTokens: 16, RopeLayout: RopeSplitHalf,
		PositionOffset: 7, RopeBase: 10000}
	k, v := NewTensor(keys, shape4...), NewTensor(values, shape4...)
	stream := must(EncodeStream(config, k, v, options))
	oneThread := options
	oneThread.Threads = 1
	if !bytes.Equal(must(EncodeStream(config, k, v, oneThread)), stream) {
		t.Fatal("threads change the stream")
	}
	info := must(GetStreamInfo(stream))
	if info.FormatMajor != 1 || !equal(info.Shape(), shape4) || info.DType != F32DType ||
		info.RopeLayout != RopeSplitHalf || info.PositionOffset != 7 || info.RopeBase != 10000 {
		t.Fatalf("%+v", info)
	}
	var total uint64
	for layer := uint32(0); layer < 3; layer++ {
		l := must(GetStreamLayer(stream, layer))
		if l.Keys.String() != "tq-mse-b4" {
			t.Fatal(l.Keys)
		}
		total += l.KeysBytes + l.ValuesBytes
	}
	if total >= uint64(len(stream)) {
		t.Fatal("layer bytes")
	}
	if _, err := GetStreamLayer(stream, 3); !errors.Is(err, InvalidArgument) {
		t.Fatal(err)
	}
	dk, dv, err := DecodeStream[float32](stream, 0)
	if err != nil || relMSE(keys, dk.Data) > 0.02 || relMSE(widen(t, values), dv.Data) > 0.02 {
		t.Fatal(err)
	}
	onlyValues := NewTensor(make([]BF16, count), shape4...)
	if err := DecodeStreamInto[float32, BF16](stream, nil, &onlyValues, 1); err != nil {
		t.Fatal(err)
	}
	if !equal(onlyValues.Data, convert[BF16](t, dv.Data)) {
		t.Fatal("bf16 values")
	}
	if _, _, err := DecodeStream[float32](stream[:len(stream)-1], 0); !errors.Is(err, Truncated) {
		t.Fatal(err)
	}
	short := NewTensor(keys[:count/3], 1, 2, 40, 64)
	if _, err := EncodeStream(config, short, v, options); !errors.Is(err, ShapeMismatch) {
		t.Fatal(err)
	}
}

func TestGoroutinesShareAConfig(t *testing.T) {
	config := must(PresetConfig("tq-3.5"))
	defer config.Close()
	method := must(config.Layer(0, 1, Keys))
	inputs := make([][]float32, 8)
	expected := make([][]byte, 8)
	for i := range inputs {
		inputs[i] = sample(2*64*128, uint64(100+i))
		expected[i] = must(EncodeBlock(method, NewTensor(inputs[i], 2, 64, 128), BlockPosition{}))
	}
	results := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range inputs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i], _ = EncodeBlock(method, NewTensor(inputs[i], 2, 64, 128), BlockPosition{})
		}(i)
	}
	wg.Wait()
	for i := range results {
		if !bytes.Equal(results[i], expected[i]) {
			t.Fatal("concurrent encode differs", i)
		}
	}
}
