"""Text to token ids, and the evaluation windows over them.

Byte-level checkpoints (config.json "tokenizer": "bytes ...", the kvlab
models) read the file's bytes as ids. Others need tokenizer.json and the
`tokenizers` package. Each token also gets its length in UTF-8 bytes, so that
the loss can be reported in bits per byte whatever the tokenizer.
"""
import os

import numpy as np

from .errors import EvalError


def tokenize(model, path):
    """(ids, bytes_per_token) of the text file at `path`, int64 arrays."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise EvalError(f"{path}: {e.strerror}") from e
    kind = model.config.tokenizer
    if isinstance(kind, str) and kind.startswith("bytes"):
        ids = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        return ids, np.ones(len(ids), dtype=np.int64)
    tokenizer_json = os.path.join(model.directory, "tokenizer.json")
    if not os.path.exists(tokenizer_json):
        raise EvalError(f"{model.directory}: no tokenizer.json, and config.json does "
                        "not declare a byte tokenizer (\"tokenizer\": \"bytes ...\")")
    try:
        from tokenizers import Tokenizer  # Optional: only for subword checkpoints.
    except ImportError as e:
        raise EvalError(f"{tokenizer_json} needs the Python package 'tokenizers', "
                        "which is not importable") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EvalError(f"{path}: not UTF-8 text ({e})") from e
    encoding = Tokenizer.from_file(tokenizer_json).encode(text, add_special_tokens=False)
    ids = np.asarray(encoding.ids, dtype=np.int64)
    # Byte length of each token's span of the text; the spans of consecutive
    # tokens tile the text, so the bytes of a window add up to its text.
    starts = [0] + [end for _, end in encoding.offsets[:-1]]
    ends = [end for _, end in encoding.offsets[:-1]] + [len(text)]
    lengths = [len(text[s:e].encode("utf-8")) for s, e in zip(starts, ends)]
    return ids, np.asarray(lengths, dtype=np.int64)


def windows(count, tokens, num_windows):
    """Start offsets of the windows of `tokens` (+1 target) over `count` ids.

    stride = (count - tokens - 1) // num_windows and window i starts at
    i * stride: the windows spread over the whole text, as the kvlab
    reference places them.
    """
    if tokens < 1 or num_windows < 1:
        raise EvalError("--tokens and --windows must be at least 1")
    if count < tokens + 1:
        raise EvalError(f"the text has {count} tokens; a window needs {tokens + 1}")
    stride = (count - tokens - 1) // num_windows
    if num_windows > 1 and stride == 0:
        raise EvalError(f"the text ({count} tokens) is too short for {num_windows} "
                        f"distinct windows of {tokens}")
    return [i * stride for i in range(num_windows)]
