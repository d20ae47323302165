package kvcodec

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

var cacheShape = []int{3, 2, 40, 64} // layers, heads, tokens, head_dim

func cacheOptions() WriterOptions {
	o := DefaultWriterOptions()
	o.Threads, o.BlockTokens = 2, 16
	o.ModelName, o.ModelConfigHash = "kvlab-test", Hash64([]byte(`{"layers": 3}`))
	return o
}

func cacheDesc() CacheDesc {
	return CacheDesc{NumLayers: cacheShape[0], NumKVHeads: cacheShape[1], NumTokens: cacheShape[2],
		HeadDim: cacheShape[3]}
}

func cacheConfig(t *testing.T) *Config {
	t.Helper()
	return must(ParseConfig("kvcodec-config 1\nall kv=tq-mse-b4\n"))
}

// layerOf is layer l, heads [h0, h1) x tokens [t0, t1) of a [layers, heads, tokens, dim] cache.
func layerOf(data []float32, l, h0, h1, t0, t1 int) []float32 {
	h, tk, d := cacheShape[1], cacheShape[2], cacheShape[3]
	var out []float32
	for head := h0; head < h1; head++ {
		for token := t0; token < t1; token++ {
			start := ((l*h+head)*tk + token) * d
			out = append(out, data[start:start+d]...)
		}
	}
	return out
}

// writeCache gives keys, values [layers, heads, tokens, dim] and their cache.
func writeCache(t *testing.T) ([]float32, []float32, []byte) {
	t.Helper()
	count := cacheShape[0] * cacheShape[1] * cacheShape[2] * cacheShape[3]
	keys, values := sample(count, 1), sample(count, 2)
	var out bytes.Buffer
	w := must(NewCacheWriter(cacheConfig(t), cacheDesc(), cacheOptions(), &out))
	defer w.Close()
	per := count / cacheShape[0]
	for l := 0; l < cacheShape[0]; l++ {
		k := NewTensor(keys[l*per:(l+1)*per], cacheShape[1:]...)
		v := NewTensor(values[l*per:(l+1)*per], cacheShape[1:]...)
		if err := w.AddLayer(k, v); err != nil {
			t.Fatal(err)
		}
	}
	size := must(w.Finish())
	if size != uint64(out.Len()) {
		t.Fatalf("Finish says %d bytes, the writer got %d", size, out.Len())
	}
	return keys, values, out.Bytes()
}

func TestCacheWriterAndRandomAccess(t *testing.T) {
	keys, values, data := writeCache(t)
	dk, dv := must2(DecodeStream[float32](data, 0))
	if relMSE(keys, dk.Data) > 0.02 || relMSE(values, dv.Data) > 0.02 {
		t.Fatal("the whole-stream decode is far from the input")
	}
	c := must(OpenCache(bytes.NewReader(data), int64(len(data)), OpenOptions{}))
	defer c.Close()
	info := must(c.Info())
	if !equal(info.Stream.Shape(), cacheShape) || info.Stream.FormatMinor != 1 ||
		info.Segments != 1 || info.Size != uint64(len(data)) || info.IgnoredBytes != 0 ||
		info.Blocks != 3*2*3 || !info.HasModel || info.ModelName != "kvlab-test" ||
		info.ModelConfigHash != Hash64([]byte(`{"layers": 3}`)) {
		t.Fatalf("info %+v", info)
	}
	kc, _, err := c.LayerConfig(2)
	if err != nil || kc.String() != "tq-mse-b4" {
		t.Fatal(kc, err)
	}
	tokens := 0
	for i := 0; i < info.Blocks; i++ {
		e := must(c.Block(i))
		if e.Offset+e.Size > info.Size {
			t.Fatalf("block %d: %+v", i, e)
		}
		if e.Layer == 1 && e.Kind == Values {
			tokens += e.TokenCount
		}
	}
	if tokens != 40 {
		t.Fatalf("layer 1's values blocks hold %d tokens", tokens)
	}
	if _, err := c.Block(info.Blocks); !errors.Is(err, InvalidArgument) {
		t.Fatal(err)
	}
	for l := 0; l < 3; l++ {
		for _, kv := range []struct {
			kind  Kind
			whole []float32
		}{{Keys, dk.Data}, {Values, dv.Data}} {
			all := must(c.Read(l, kv.kind, 0, 2, 0, 40))
			if !equal(all.Shape, []int{2, 40, 64}) || !equal(all.Data, layerOf(kv.whole, l, 0, 2, 0, 40)) {
				t.Fatalf("layer %d kind %d differs from the whole-stream decode", l, kv.kind)
			}
			part := must(c.Read(l, kv.kind, 1, 1, 5, 32))
			if !equal(part.Data, layerOf(kv.whole, l, 1, 2, 5, 37)) {
				t.Fatalf("layer %d kind %d: a window differs", l, kv.kind)
			}
		}
	}
	if _, err := c.Read(0, Keys, 0, 2, 30, 20); err == nil {
		t.Fatal("a read past the end succeeded")
	}
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// trickle hands out at most piece bytes per read, as a network would.
type trickle struct {
	r     io.Reader
	piece int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(p) > t.piece {
		p = p[:t.piece]
	}
	return t.r.Read(p)
}

func TestStreamReaderInSmallPieces(t *testing.T) {
	_, _, data := writeCache(t)
	dk, dv := must2(DecodeStream[float32](data, 0))
	s := must(NewStreamReader(&trickle{bytes.NewReader(data), 7}, OpenOptions{}))
	defer s.Close()
	if !equal(s.Info().Shape(), cacheShape) {
		t.Fatal(s.Info())
	}
	if _, _, err := s.Read(); !errors.Is(err, InvalidArgument) {
		t.Fatal("Read before Next:", err)
	}
	var layers []int
	for {
		run, ok, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if run.TokenStart != 0 || run.TokenCount != 40 || run.Segment != 0 {
			t.Fatalf("run %+v", run)
		}
		k, v := must2(s.Read())
		if !equal(k.Data, layerOf(dk.Data, run.Layer, 0, 2, 0, 40)) ||
			!equal(v.Data, layerOf(dv.Data, run.Layer, 0, 2, 0, 40)) {
			t.Fatalf("layer %d differs from the whole-stream decode", run.Layer)
		}
		layers = append(layers, run.Layer)
	}
	if !equal(layers, []int{0, 1, 2}) {
		t.Fatal(layers)
	}
}

func TestCacheDamagedByteIsAChecksumError(t *testing.T) {
	_, _, data := writeCache(t)
	c := must(OpenCache(bytes.NewReader(data), int64(len(data)), OpenOptions{}))
	e := must(c.Block(4))
	c.Close()
	damaged := append([]byte(nil), data...)
	damaged[e.Offset+e.Size/2] ^= 0x10
	c = must(OpenCache(bytes.NewReader(damaged), int64(len(damaged)), OpenOptions{}))
	defer c.Close()
	if _, err := c.Read(e.Layer, e.Kind, 0, 2, 0, 40); !errors.Is(err, Checksum) {
		t.Fatal(err)
	}
	other := Keys
	if e.Kind == Keys {
		other = Values
	}
	must(c.Read(e.Layer, other, 0, 2, 0, 40))

	s := must(NewStreamReader(bytes.NewReader(damaged), OpenOptions{}))
	defer s.Close()
	for {
		run, ok, err := s.Next()
		if err != nil || !ok {
			t.Fatal("the damaged layer was never reported:", err)
		}
		if _, _, err := s.Read(); err != nil {
			if !errors.Is(err, Checksum) || run.Layer != e.Layer {
				t.Fatal(run, err)
			}
			break
		}
	}
}

func TestCacheAppend(t *testing.T) {
	_, _, data := writeCache(t)
	c := must(OpenCache(bytes.NewReader(data), int64(len(data)), OpenOptions{}))
	size := must(c.Info()).Size
	out := bytes.NewBuffer(append([]byte(nil), data[:size]...))
	w := must(c.Append(8, cacheOptions(), out))
	count := 2 * 8 * 64
	for l := 0; l < 3; l++ {
		k, v := sample(count, uint64(10+l)), sample(count, uint64(20+l))
		if err := w.AddLayer(NewTensor(k, 2, 8, 64), NewTensor(v, 2, 8, 64)); err != nil {
			t.Fatal(err)
		}
	}
	must(w.Finish())
	w.Close()
	c.Close()
	appended := out.Bytes()

	c = must(OpenCache(bytes.NewReader(appended), int64(len(appended)), OpenOptions{}))
	defer c.Close()
	info := must(c.Info())
	if info.Segments != 2 || info.Stream.NumTokens != 48 || info.Size != uint64(len(appended)) {
		t.Fatalf("info %+v", info)
	}
	added := must(c.Read(1, Values, 0, 2, 40, 8))
	if relMSE(sample(count, 21), added.Data) > 0.02 {
		t.Fatal("appended tokens are far from the input")
	}
	s := must(NewStreamReader(bytes.NewReader(appended), OpenOptions{}))
	defer s.Close()
	var runs []LayerRun
	for {
		run, ok, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		_, v := must2(s.Read())
		if run.Layer == 1 && run.Segment == 1 && !equal(v.Data, added.Data) {
			t.Fatal("the streaming reader's appended run differs from random access")
		}
		runs = append(runs, run)
	}
	if len(runs) != 6 || runs[3] != (LayerRun{Layer: 0, TokenStart: 40, TokenCount: 8, Segment: 1}) {
		t.Fatalf("runs %+v", runs)
	}

	// An interrupted append: the cache opens as it was.
	cut := appended[:len(data)+(len(appended)-len(data))/2]
	c2 := must(OpenCache(bytes.NewReader(cut), int64(len(cut)), OpenOptions{}))
	defer c2.Close()
	info = must(c2.Info())
	if info.Segments != 1 || info.Stream.NumTokens != 40 || info.IgnoredBytes != uint64(len(cut)-len(data)) {
		t.Fatalf("info %+v", info)
	}
}

func TestCacheModelIdentity(t *testing.T) {
	_, _, data := writeCache(t)
	r := bytes.NewReader(data)
	must(OpenCache(r, r.Size(), OpenOptions{ExpectModelName: "kvlab-test"})).Close()
	if _, err := OpenCache(r, r.Size(), OpenOptions{ExpectModelName: "other"}); !errors.Is(err, ModelMismatch) {
		t.Fatal(err)
	}
	must(OpenCache(r, r.Size(), OpenOptions{ExpectModelName: "other", AllowModelMismatch: true})).Close()
	if _, err := NewStreamReader(bytes.NewReader(data), OpenOptions{ExpectModelName: "other"}); !errors.Is(err, ModelMismatch) {
		t.Fatal(err)
	}
}

// failing accepts left bytes, then fails or panics.
type failing struct {
	left  int
	panic bool
}

func (f *failing) Write(p []byte) (int, error) {
	if len(p) > f.left {
		if f.panic {
			panic("writer panicked")
		}
		return 0, errors.New("disk full")
	}
	f.left -= len(p)
	return len(p), nil
}

// broken reads its bytes, then fails.
type broken struct{ data []byte }

func (b *broken) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		return 0, errors.New("connection reset")
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func TestCacheIOErrorsAndPanicsComeBack(t *testing.T) {
	count := cacheShape[1] * cacheShape[2] * cacheShape[3]
	view := NewTensor(sample(count, 3), cacheShape[1:]...)
	fill := func(w *CacheWriter) error {
		for l := 0; l < 3; l++ {
			if err := w.AddLayer(view, view); err != nil {
				return err
			}
		}
		_, err := w.Finish()
		return err
	}
	w := must(NewCacheWriter(cacheConfig(t), cacheDesc(), cacheOptions(), &failing{left: 2000}))
	err := fill(w)
	w.Close()
	if !errors.Is(err, IO) || !strings.Contains(err.Error(), "disk full") {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if p := recover(); p != "writer panicked" {
				t.Fatal("the callback's panic did not come back:", p)
			}
		}()
		w := must(NewCacheWriter(cacheConfig(t), cacheDesc(), cacheOptions(), &failing{left: 2000, panic: true}))
		defer w.Close()
		fill(w)
	}()

	_, _, data := writeCache(t)
	s := must(NewStreamReader(&broken{data[:len(data)/2]}, OpenOptions{}))
	defer s.Close()
	for {
		_, ok, err := s.Next()
		if err == nil && ok {
			_, _, err = s.Read()
		}
		if err != nil {
			if !errors.Is(err, IO) || !strings.Contains(err.Error(), "connection reset") {
				t.Fatal(err)
			}
			break
		}
		if !ok {
			t.Fatal("a broken stream read to its end")
		}
	}
}
