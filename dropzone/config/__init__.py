"""Configuration: the typed settings the CLI loads once (with every problem reported), the
Ollama hosts they name, the reference generated from them, and parsers of setting values."""
