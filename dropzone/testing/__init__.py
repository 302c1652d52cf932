"""Test support: the Ollama API emulator and builders for test artifacts.

Needs the ``test`` extra (``gguf``, ``safetensors``, ``numpy``).
"""
