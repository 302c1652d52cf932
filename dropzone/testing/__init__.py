"""Test support: the Ollama API emulator and builders for test artifacts.

The emulator (``python -m dropzone.testing.ollama``) needs only the product's dependencies;
``builders`` needs the ``test`` extra (``gguf``, ``safetensors``, ``numpy``) to make inputs.
"""
