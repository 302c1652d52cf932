"""The state store (SQLite): read-write for the daemon, read-only for status and doctor, its
health when the disk fills, and the lock that allows one daemon per store."""
