"""The file system at the edge: a file's identity, the one safe way to open a drop-folder file,
facts about a mount, and names that are not UTF-8."""
