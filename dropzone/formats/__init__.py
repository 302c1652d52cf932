"""File formats, read without trusting them: GGUF and safetensors headers, ggml type tables,
and the one rule for how long a complete file is. Pure: bytes in, values or errors out."""
