"""Talking to Ollama servers: the client with bounded reads and deadlines, greeting hosts at
start, probing hosts that are down, and the load check after create."""
