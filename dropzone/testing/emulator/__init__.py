"""The Ollama API emulator's parts: HTTP transport, routing, create, model queries, sources,
its on-disk store and fault injection. Entry point: ``python -m dropzone.testing.ollama``."""
