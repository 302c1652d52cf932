"""Run the emulator as ``python -m dropzone.testing.ollama`` would, with the ``test`` extra's
packages made unimportable: a plain ``pip install dropzone`` has none of them (issue 15)."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

FORBIDDEN = ("numpy", "gguf", "safetensors", "torch")


class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname.partition(".")[0] in FORBIDDEN:
            raise ModuleNotFoundError(f"{fullname} is not installed (no test extra)")


if __name__ == "__main__":
    sys.meta_path.insert(0, _Refuse())
    from dropzone.testing.ollama import main

    sys.exit(main(sys.argv[1:]))
