"""dropzone: turn files dropped into a folder into named Ollama models."""

__version__ = "0.1.0"
