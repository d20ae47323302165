/* Prints the size of every struct of the public header and the offset of
 * each of its fields, one per line:
 *     kvc_tensor_config 56
 *     kvc_tensor_config.seed 24
 * The Python and Rust bindings declare these structs by hand; their tests
 * compile this file against the header and compare the structs they declare,
 * so a header change that the bindings have not followed fails there instead
 * of corrupting memory.
 * (Go's binding uses the header itself through cgo.) */
#include <kvcodec/kvcodec.h>

#include <stddef.h>
#include <stdio.h>

#define SIZE(type) printf("%s %zu\n", #type, sizeof(type))
#define FIELD(type, field) printf("%s.%s %zu\n", #type, #field, offsetof(type, field))

int main(void) {
  SIZE(kvc_diagnostics);
  FIELD(kvc_diagnostics, message);

  SIZE(kvc_tensor);
  FIELD(kvc_tensor, data);
  FIELD(kvc_tensor, dtype);
  FIELD(kvc_tensor, ndim);
  FIELD(kvc_tensor, shape);
  FIELD(kvc_tensor, strides);

  SIZE(kvc_tensor_config);
  FIELD(kvc_tensor_config, struct_size);
  FIELD(kvc_tensor_config, method);
  FIELD(kvc_tensor_config, bits);
  FIELD(kvc_tensor_config, scalar_format);
  FIELD(kvc_tensor_config, flags);
  FIELD(kvc_tensor_config, rotation);
  FIELD(kvc_tensor_config, seed);
  FIELD(kvc_tensor_config, outlier_sixteenths);
  FIELD(kvc_tensor_config, angle_bins);
  FIELD(kvc_tensor_config, radius_format);
  FIELD(kvc_tensor_config, level_bits);
  FIELD(kvc_tensor_config, min_bits);
  FIELD(kvc_tensor_config, rope_pairing);

  SIZE(kvc_block_info);
  FIELD(kvc_block_info, struct_size);
  FIELD(kvc_block_info, layer);
  FIELD(kvc_block_info, kind);
  FIELD(kvc_block_info, head_dim);
  FIELD(kvc_block_info, head_start);
  FIELD(kvc_block_info, head_count);
  FIELD(kvc_block_info, token_start);
  FIELD(kvc_block_info, token_count);

  SIZE(kvc_cache_desc);
  FIELD(kvc_cache_desc, struct_size);
  FIELD(kvc_cache_desc, num_layers);
  FIELD(kvc_cache_desc, num_kv_heads);
  FIELD(kvc_cache_desc, head_dim);
  FIELD(kvc_cache_desc, num_tokens);
  FIELD(kvc_cache_desc, dtype);
  FIELD(kvc_cache_desc, rope_layout);
  FIELD(kvc_cache_desc, position_offset);
  FIELD(kvc_cache_desc, rope_base);

  SIZE(kvc_encode_options);
  FIELD(kvc_encode_options, struct_size);
  FIELD(kvc_encode_options, threads);
  FIELD(kvc_encode_options, block_tokens);
  FIELD(kvc_encode_options, queries);

  SIZE(kvc_decode_options);
  FIELD(kvc_decode_options, struct_size);
  FIELD(kvc_decode_options, threads);

  SIZE(kvc_stream_info);
  FIELD(kvc_stream_info, struct_size);
  FIELD(kvc_stream_info, format_major);
  FIELD(kvc_stream_info, format_minor);
  FIELD(kvc_stream_info, num_layers);
  FIELD(kvc_stream_info, num_kv_heads);
  FIELD(kvc_stream_info, head_dim);
  FIELD(kvc_stream_info, num_tokens);
  FIELD(kvc_stream_info, dtype);
  FIELD(kvc_stream_info, rope_layout);
  FIELD(kvc_stream_info, position_offset);
  FIELD(kvc_stream_info, rope_base);

  /* Attention on encoded blocks. */
  SIZE(kvc_buffer);
  FIELD(kvc_buffer, data);
  FIELD(kvc_buffer, size);

  SIZE(kvc_attention_options);
  FIELD(kvc_attention_options, struct_size);
  FIELD(kvc_attention_options, threads);
  FIELD(kvc_attention_options, scale);
  FIELD(kvc_attention_options, token_begin);
  FIELD(kvc_attention_options, token_end);
  FIELD(kvc_attention_options, flags);
  FIELD(kvc_attention_options, runner);
  FIELD(kvc_attention_options, runner_opaque);

  /* Caches on disk and on the wire (format 1.1). */
  SIZE(kvc_writer_options);
  FIELD(kvc_writer_options, struct_size);
  FIELD(kvc_writer_options, threads);
  FIELD(kvc_writer_options, block_tokens);
  FIELD(kvc_writer_options, zstd_level);
  FIELD(kvc_writer_options, appendable);
  FIELD(kvc_writer_options, reserved);
  FIELD(kvc_writer_options, model_name);
  FIELD(kvc_writer_options, model_config_hash);
  FIELD(kvc_writer_options, sync);

  SIZE(kvc_open_options);
  FIELD(kvc_open_options, struct_size);
  FIELD(kvc_open_options, allow_model_mismatch);
  FIELD(kvc_open_options, expect_model_name);
  FIELD(kvc_open_options, expect_model_config_hash);

  SIZE(kvc_cache_info);
  FIELD(kvc_cache_info, struct_size);
  FIELD(kvc_cache_info, features);
  FIELD(kvc_cache_info, stream);
  FIELD(kvc_cache_info, segments);
  FIELD(kvc_cache_info, blocks);
  FIELD(kvc_cache_info, size);
  FIELD(kvc_cache_info, ignored_bytes);
  FIELD(kvc_cache_info, has_model);
  FIELD(kvc_cache_info, reserved);
  FIELD(kvc_cache_info, model_config_hash);
  FIELD(kvc_cache_info, model_name);

  SIZE(kvc_layer_run);
  FIELD(kvc_layer_run, struct_size);
  FIELD(kvc_layer_run, end);
  FIELD(kvc_layer_run, layer);
  FIELD(kvc_layer_run, token_start);
  FIELD(kvc_layer_run, token_count);
  FIELD(kvc_layer_run, segment);

  SIZE(kvc_block_entry);
  FIELD(kvc_block_entry, struct_size);
  FIELD(kvc_block_entry, layer);
  FIELD(kvc_block_entry, kind);
  FIELD(kvc_block_entry, token_start);
  FIELD(kvc_block_entry, token_count);
  FIELD(kvc_block_entry, reserved);
  FIELD(kvc_block_entry, offset);
  FIELD(kvc_block_entry, size);
  return 0;
}
