"""kvc-eval: model-quality evaluation of kvcodec configs (tools/kvc-eval).

model: a Llama-family forward pass in numpy with a hook on the KV cache;
text: tokens and evaluation windows; codec: kvcodec configs applied per
layer; evaluate: bits per byte with an fp16 cache and through the codec.
"""
