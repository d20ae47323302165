package kvcodec

/*
#include <stdio.h>
#include <stdlib.h>
#include <kvcodec/kvcodec.h>

// cgo lets C see Go memory only through pointers passed as call arguments,
// never through pointers stored in memory (the kvc_buffer arrays): the
// blocks arrive as one Go buffer each for keys and values and their end
// offsets, and the kvc_buffer arrays are built here in C memory.
static kvc_status kvcgo_decode_attention(
    const unsigned char* keys, const size_t* key_ends, size_t key_count,
    const unsigned char* values, const size_t* value_ends, size_t value_count,
    const float* queries, uint32_t num_query_heads, uint32_t threads, float scale,
    uint32_t token_begin, uint32_t token_end, uint32_t flags, float* out, size_t out_capacity,
    float* lse, kvc_diagnostics* diag) {
  kvc_buffer* buffers = (kvc_buffer*)malloc((key_count + value_count + 1) * sizeof(kvc_buffer));
  kvc_attention_options options;
  kvc_status status;
  size_t i;
  if (buffers == NULL) {
    snprintf(diag->message, sizeof(diag->message), "no memory for %zu block descriptors",
             key_count + value_count);
    return KVC_ERR_OUT_OF_MEMORY;
  }
  for (i = 0; i < key_count; ++i) {
    size_t start = i == 0 ? 0 : key_ends[i - 1];
    buffers[i].data = keys + start;
    buffers[i].size = key_ends[i] - start;
  }
  for (i = 0; i < value_count; ++i) {
    size_t start = i == 0 ? 0 : value_ends[i - 1];
    buffers[key_count + i].data = values + start;
    buffers[key_count + i].size = value_ends[i] - start;
  }
  kvc_attention_options_init(&options);
  options.threads = threads;
  options.scale = scale;
  options.token_begin = token_begin;
  options.token_end = token_end;
  options.flags = flags;
  status = kvc_decode_attention(buffers, key_count, buffers + key_count, value_count, queries,
                                num_query_heads, &options, out, out_capacity, lse, diag);
  free(buffers);
  return status;
}
*/
import "C"

import "unsafe"

// BlockAttend computes weighted sums of the block's vectors in the codec
// (rotation methods: accumulated in their rotated domain, rotated back once
// per output): out[h][q] = sum over t of weights[h][q][t] * v[h][t].
// weights: [head_count, queriesPerHead, token_count] (BlockScores' layout);
// the result: [head_count, queriesPerHead, head_dim].
func BlockAttend(data []byte, weights []float32, queriesPerHead int) ([]float32, error) {
	info, err := GetBlockInfo(data)
	if err != nil {
		return nil, err
	}
	if queriesPerHead <= 0 || len(weights) != info.HeadCount*queriesPerHead*info.TokenCount {
		return nil, invalid("weights must be [%d, %d, %d]: %d floats, not %d", info.HeadCount,
			queriesPerHead, info.TokenCount, info.HeadCount*queriesPerHead*info.TokenCount,
			len(weights))
	}
	perHead, err := u32(queriesPerHead, "queriesPerHead")
	if err != nil {
		return nil, err
	}
	out := make([]float32, info.HeadCount*queriesPerHead*info.HeadDim)
	var diag C.kvc_diagnostics
	err = check(C.kvc_block_attend(bytesPointer(data), C.size_t(len(data)),
		(*C.float)(unsafe.Pointer(&weights[0])), perHead, (*C.float)(unsafe.Pointer(&out[0])),
		C.size_t(len(out)), &diag), &diag)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// BlockList holds encoded blocks of one layer's keys or values for
// DecodeAttention, copied into one buffer: cgo cannot hand C a list of Go
// slices, so a cache that grows block by block appends each block once and
// reuses the list for every decode step.
type BlockList struct {
	data []byte
	ends []C.size_t // end offset of each block in data
}

// NewBlockList copies the blocks into a new list.
func NewBlockList(blocks ...[]byte) *BlockList {
	list := &BlockList{}
	for _, block := range blocks {
		list.Append(block)
	}
	return list
}

// Append copies a block to the end of the list.
func (l *BlockList) Append(block []byte) {
	l.data = append(l.data, block...)
	l.ends = append(l.ends, C.size_t(len(l.data)))
}

// Len is the number of blocks.
func (l *BlockList) Len() int { return len(l.ends) }

// Block is block i of the list (a view of the list's copy).
func (l *BlockList) Block(i int) []byte {
	start := 0
	if i > 0 {
		start = int(l.ends[i-1])
	}
	return l.data[start:int(l.ends[i])]
}

// AttentionOptions are DecodeAttention's options; the zero value gives the
// defaults.
type AttentionOptions struct {
	Threads uint32  // 0: one per core
	Scale   float32 // logits are Scale * q.k; 0: 1/sqrt(head_dim)
	// The attended tokens [TokenBegin, TokenEnd), as the blocks number them;
	// TokenEnd 0: through the last token the blocks hold.
	TokenBegin, TokenEnd uint32
	// TrustedBlocks skips the blocks' checksums, for blocks checked once when
	// they were loaded (e.g. by GetBlockInfo): each block is then read once
	// per step. Their structure is still checked; damage gives a wrong result.
	TrustedBlocks bool
}

// DecodeAttention computes one decode step of attention for one layer on its
// encoded K and V blocks (standalone blocks of that layer, in any order,
// together covering KV heads [h0, h0 + H) and, for each, one contiguous token
// range exactly once; the value blocks the same heads and tokens): for every
// query head j, out[j] = softmax(scale * q_j . k_t) . v_t over the attended
// tokens. queries: [num_query_heads, head_dim], num_query_heads a multiple of
// H; query head j reads KV head h0 + j / (num_query_heads / H) (grouped-query
// attention). options may be nil. Returns out, [num_query_heads, head_dim],
// and lse, [num_query_heads]: the natural log of each head's softmax
// denominator (the sum over t of exp(scale * q_j . k_t)), to merge with
// attention over other tokens.
func DecodeAttention(keys, values *BlockList, queries []float32,
	options *AttentionOptions) (out, lse []float32, err error) {
	if keys == nil {
		keys = &BlockList{}
	}
	if values == nil {
		values = &BlockList{}
	}
	if options == nil {
		options = &AttentionOptions{}
	}
	// The library reads num_query_heads x the blocks' head_dim floats of
	// queries: their count must be a multiple of it. Without key blocks the
	// library names the problem (it reads no queries then).
	headDim := len(queries)
	if keys.Len() > 0 {
		info, err := GetBlockInfo(keys.Block(0))
		if err != nil {
			return nil, nil, err
		}
		headDim = info.HeadDim
	}
	if len(queries) == 0 || len(queries)%headDim != 0 {
		return nil, nil, invalid("queries must be [num_query_heads, %d]: a positive multiple "+
			"of %d floats, not %d", headDim, headDim, len(queries))
	}
	numQueryHeads, err := u32(len(queries)/headDim, "num_query_heads")
	if err != nil {
		return nil, nil, err
	}
	var flags C.uint32_t
	if options.TrustedBlocks {
		flags = C.KVC_ATTENTION_TRUSTED_BLOCKS
	}
	out = make([]float32, len(queries))
	lse = make([]float32, int(numQueryHeads))
	var diag C.kvc_diagnostics
	err = check(C.kvcgo_decode_attention(
		(*C.uchar)(bytesPointer(keys.data)), sizesPointer(keys.ends), C.size_t(keys.Len()),
		(*C.uchar)(bytesPointer(values.data)), sizesPointer(values.ends), C.size_t(values.Len()),
		(*C.float)(unsafe.Pointer(&queries[0])), numQueryHeads, C.uint32_t(options.Threads),
		C.float(options.Scale), C.uint32_t(options.TokenBegin), C.uint32_t(options.TokenEnd),
		flags,
		(*C.float)(unsafe.Pointer(&out[0])), C.size_t(len(out)),
		(*C.float)(unsafe.Pointer(&lse[0])), &diag), &diag)
	if err != nil {
		return nil, nil, err
	}
	return out, lse, nil
}

func sizesPointer(sizes []C.size_t) *C.size_t {
	if len(sizes) == 0 {
		return nil
	}
	return &sizes[0]
}
