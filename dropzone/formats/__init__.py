"""File formats, read without trusting them: GGUF and safetensors headers, ggml type tables,
whole GGUF metadata values for a caller that wants them (``gguf_values``), and the one rule
for how long a complete file is. Pure: bytes in, values or errors out."""
