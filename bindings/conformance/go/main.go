// The Go side of the cross-language conformance test (../README.md):
//
//	kvcodec-conformance encode OUT
//	kvcodec-conformance decode IN OUT
package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"kvcodec"
)

const (
	layers, heads, tokens, dim, queriesPerHead = 2, 2, 40, 64, 2
	count                                      = layers * heads * tokens * dim
)

// generate is the input of README.md: SplitMix64 draws as k * 2^(e - 8).
func generate(seed uint64, n int) []float32 {
	values := make([]float32, n)
	state := seed
	for i := range values {
		state += 0x9E3779B97F4A7C15
		z := state
		z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
		z = (z ^ z>>27) * 0x94D049BB133111EB
		z ^= z >> 31
		k := float32(int8(uint8(z >> 56)))
		values[i] = k * float32(uint32(1)<<((z>>53)&7)) / 256
	}
	return values
}

// half is exact for the generated values (zero or normal in f16).
func half(value float32) kvcodec.F16 {
	bits := math.Float32bits(value)
	sign := uint16(bits>>16) & 0x8000
	if bits&0x7FFFFFFF == 0 {
		return kvcodec.F16(sign)
	}
	return kvcodec.F16(sign | uint16(((bits>>23)&0xFF)+15-127)<<10 | uint16(bits>>13)&0x3FF)
}

func convert[T kvcodec.Element](values []float32, f func(float32) T) []T {
	out := make([]T, len(values))
	for i, v := range values {
		out[i] = f(v)
	}
	return out
}

func writeEncoded[T kvcodec.Element](preset, dtype string, keys, values []T, out string) error {
	config, err := kvcodec.PresetConfig(preset)
	if err != nil {
		return err
	}
	defer config.Close()
	options := kvcodec.StreamOptions{Threads: 2, BlockTokens: 16,
		RopeLayout: kvcodec.RopeSplitHalf, RopeBase: 10000}
	stream, err := kvcodec.EncodeStream(config, kvcodec.NewTensor(keys, layers, heads, tokens, dim),
		kvcodec.NewTensor(values, layers, heads, tokens, dim), options)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, preset+"."+dtype+".kvc"), stream, 0o644); err != nil {
		return err
	}
	method, err := config.Layer(1, layers, kvcodec.Keys)
	if err != nil {
		return err
	}
	layer1 := kvcodec.NewTensor(keys[heads*tokens*dim:], heads, tokens, dim)
	block, err := kvcodec.EncodeBlock(method, layer1, kvcodec.BlockPosition{Layer: 1, Kind: kvcodec.Keys})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, preset+"."+dtype+".kvcb"), block, 0o644)
}

func encode(out string) error {
	keys, values := generate(1, count), generate(2, count)
	bfloat := func(v float32) kvcodec.BF16 { return kvcodec.BF16(math.Float32bits(v) >> 16) }
	for _, preset := range kvcodec.Presets() {
		if err := writeEncoded(preset.Name, "f32", keys, values, out); err != nil {
			return err
		}
		if err := writeEncoded(preset.Name, "f16", convert(keys, half), convert(values, half),
			out); err != nil {
			return err
		}
		if err := writeEncoded(preset.Name, "bf16", convert(keys, bfloat), convert(values, bfloat),
			out); err != nil {
			return err
		}
	}
	return nil
}

// raw is the elements' bytes in memory order (little-endian here, as in C).
func raw[T kvcodec.Element](values []T) []byte {
	if len(values) == 0 {
		return nil
	}
	size := len(values) * int(unsafe.Sizeof(values[0]))
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&values[0])), size)...)
}

func decodeStreamAs[T kvcodec.Element](data []byte, path string) error {
	keys, values, err := kvcodec.DecodeStream[T](data, 0)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw(keys.Data), raw(values.Data)...), 0o644)
}

func decodeBlockAs[T kvcodec.Element](data []byte, path string) error {
	block, err := kvcodec.DecodeBlock[T](data)
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw(block.Data), 0o644)
}

func decode(source, out string) error {
	queries := generate(3, heads*queriesPerHead*dim)
	entries, err := os.ReadDir(source)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(source, name))
		if err != nil {
			return err
		}
		base := filepath.Join(out, name)
		stream := strings.HasSuffix(name, ".kvc")
		if !stream && !strings.HasSuffix(name, ".kvcb") {
			continue
		}
		for _, step := range []struct {
			suffix string
			run    func([]byte, string) error
		}{
			{".f32.raw", pick(stream, decodeStreamAs[float32], decodeBlockAs[float32])},
			{".f16.raw", pick(stream, decodeStreamAs[kvcodec.F16], decodeBlockAs[kvcodec.F16])},
			{".bf16.raw", pick(stream, decodeStreamAs[kvcodec.BF16], decodeBlockAs[kvcodec.BF16])},
		} {
			if err := step.run(data, base+step.suffix); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		if !stream {
			scores, err := kvcodec.BlockScores(data, queries, queriesPerHead)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := os.WriteFile(base+".scores.raw", raw(scores), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func pick(stream bool, ifStream, ifBlock func([]byte, string) error) func([]byte, string) error {
	if stream {
		return ifStream
	}
	return ifBlock
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "encode":
		err = encode(os.Args[2])
	case len(os.Args) == 4 && os.Args[1] == "decode":
		err = decode(os.Args[2], os.Args[3])
	default:
		fmt.Fprintln(os.Stderr, "usage: kvcodec-conformance encode OUT | kvcodec-conformance decode IN OUT")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance (Go):", err)
		os.Exit(1)
	}
}
