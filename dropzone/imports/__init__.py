"""The import pipeline for one artifact: readiness, hashing (followed while a file is copied),
progress, the per-host steps and pre-checks, blob placement on the same host, the importer, and
what happens to files afterwards."""
