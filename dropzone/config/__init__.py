"""Configuration: the typed settings the CLI loads once, and parsers of setting values."""
