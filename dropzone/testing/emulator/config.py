"""The config blob of a created model (``model.ConfigV2``, ollama-api.md §9.3, §12.1) and the
``info`` overrides of ``/api/create``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dropzone.testing.emulator.sources import CreateFailureError


@dataclass
class Config:
    """``model.ConfigV2``; fields in Go declaration order."""

    model_format: str = ""
    model_family: str = ""
    model_families: list[str] = field(default_factory=list)
    model_type: str = ""
    file_type: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    remote_host: str = ""
    remote_model: str = ""
    capabilities: list[str] = field(default_factory=list)
    context_length: int = 0
    embedding_length: int = 0
    base_name: str = ""
    draft: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Config:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)

    def to_json(self, diff_ids: list[str], *, rootfs: bool = False) -> dict[str, Any]:
        """The config blob; ``rootfs`` (the OCI diff_ids) only before v0.32.7 (#17619)."""
        out: dict[str, Any] = {
            "model_format": self.model_format,
            "model_family": self.model_family,
            "model_families": self.model_families or None,
            "model_type": self.model_type,
            "file_type": self.file_type,
        }
        optional = (
            *("renderer", "parser", "requires", "remote_host", "remote_model", "capabilities"),
            *("context_length", "embedding_length", "base_name", "draft"),
        )
        for key in optional:
            value = getattr(self, key)
            if value:
                out[key] = value
        out.update(architecture="amd64", os="linux")
        if rootfs:
            out["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        return out


def apply_info(config: Config, info: dict[str, Any]) -> None:
    """``applyCreateInfo``: typed overrides of config fields; type errors are 400."""
    strings = {"model_family": "model_family", "base_name": "base_name",
               "quantization_level": "file_type", "parameter_size": "model_type"}  # fmt: skip
    for key, attr in strings.items():
        value = info.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise CreateFailureError(f'info field "{key}" must be a string', 400)
        setattr(config, attr, value)
    capabilities = info.get("capabilities")
    if capabilities is not None:
        if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
            raise CreateFailureError('info field "capabilities" must be an array of strings', 400)
        config.capabilities = list(capabilities)
    for key in ("context_length", "embedding_length"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CreateFailureError(f'info field "{key}" must be a number', 400)
        if value < 0 or value != int(value):
            raise CreateFailureError(f'info field "{key}" must be a non-negative integer', 400)
        setattr(config, key, int(value))
