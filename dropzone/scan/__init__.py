"""What the drop folder holds: listing, ignore rules, units, and the classification of files
into artifacts (GGUF models, shards, adapters, safetensors folders, weight-less recipes)."""
