"""``POST /api/create`` of the Ollama emulator (ollama-api.md §4, §12).

GGUF validation (choice documented here and in ``ollama.py``): with ``validate_gguf`` (the
default from v0.30 on) a text-only model GGUF that came from ``files`` goes through a stand-in
for the ``llama-quantize … COPY`` pass: ``validating GGUF model`` progress, ``verifying
conversion``, and a new model layer whose blob is the upload with one metadata key added
(``emulator.validated``), so its digest differs from the uploaded one, as it may on a real
server. A GGUF whose tensor data is cut short fails there. Without it (servers before v0.30)
the uploaded blob is referenced as-is and split shards stay separate layers.

Quantization is a stand-in too: the new layer is the source with ``general.file_type`` set to
the target; tensor data is unchanged. Chat-template auto-detection is in
``emulator_templates.py``. Remote/cloud models and safetensors draft models are not emulated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dropzone.formats.ggml_types import FILE_TYPE_NAMES
from dropzone.recipes.names import InvalidNameError, Name, parse_name
from dropzone.testing.emulator.arch import MLP_KEY, arch_defaults, needs_mlp
from dropzone.testing.emulator.chat_templates import detect_chat_template
from dropzone.testing.emulator.config import Config, apply_info
from dropzone.testing.emulator.gguf_view import GGUFError, GGUFView, decode_gguf
from dropzone.testing.emulator.gguf_writer import (
    T_BOOL,
    T_STRING,
    T_UINT32,
    rewrite_entries,
    tensor_sources,
)
from dropzone.testing.emulator.gojson import go_json, go_json_line, human_number
from dropzone.testing.emulator.http import AbortError, Handler, parse_json_body, read_body
from dropzone.testing.emulator.pull import pull
from dropzone.testing.emulator.refs import INVALID, RefError, local_ref
from dropzone.testing.emulator.request import (
    CREATE_FIELDS,
    bind,
    license_strings,
    template_problem,
    valid_path,
)
from dropzone.testing.emulator.safetensors import safetensors_adapter, safetensors_model
from dropzone.testing.emulator.sources import (
    CreateFailureError,
    WeightLayer,
    detect_type,
    gguf_layers,
    parse_gguf_blob,
    write_temp_gguf,
)
from dropzone.testing.emulator.store import (
    CONFIG_MEDIA_TYPE,
    GGUF_MEDIA_TYPES,
    LICENSE,
    MESSAGES,
    MODEL,
    PARAMS,
    PROJECTOR,
    SYSTEM,
    TEMPLATE,
    Layer,
    Store,
)

if TYPE_CHECKING:
    from dropzone.testing.emulator.app import App

ZERO_DIGEST = "0" * 19
FILE_TYPE_VALUES = {name: value for value, name in FILE_TYPE_NAMES.items()}
QUANT_TYPES = {"F32": "F32", "F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0", "Q4_K_S": "Q4_K_S",
               "Q4_K_M": "Q4_K_M", "Q4_K": "Q4_K_M"}  # fmt: skip
# Ollama's list; "F32" never matches because KV.FileType() reads 0 as unknown (issue 15).
UNQUANTIZED = ("F16", "BF16", "F32")
NEITHER = "neither 'from' or 'files' was specified"
VISION_PREFIXES = ("a.", "mm.", "mtp.", "s.", "v.")


@dataclass
class CreateRequest:
    model: str = ""
    from_: str = ""
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    draft_files: dict[str, str] | None = None
    draft_quantize: str = ""
    template: str = ""
    system: str = ""
    license: Any = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, str]] | None = None
    quantize: str = ""
    stream: bool | None = None
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    info: dict[str, Any] | None = None

    @classmethod
    def of(cls, f: dict[str, Any]) -> CreateRequest:
        return cls(
            model=f["model"] or f["name"] or "",
            from_=f["from"] or "",
            files=f["files"],
            adapters=f["adapters"],
            draft_files=f["draft_files"],
            draft_quantize=f["draft_quantize"] or "",
            template=f["template"] or "",
            system=f["system"] or "",
            license=f["license"],
            parameters=f["parameters"],
            messages=f["messages"],
            quantize=f["quantize"] or f["quantization"] or "",
            stream=f["stream"],
            renderer=f["renderer"] or "",
            parser=f["parser"] or "",
            requires=f["requires"] or "",
            info=f["info"],
        )


def pre_stream_problem(req: CreateRequest) -> str | None:
    """The checks ``CreateHandler`` makes before streaming, in its order (§4.2)."""
    for files in (req.files, req.draft_files):
        for key in sorted(files or {}):
            if not valid_path(key):
                return "file path must be relative"
            if not (files or {})[key]:
                return "invalid digest format"
    if req.draft_quantize and not req.draft_files:
        return "--draft-quantize requires a DRAFT model"
    if any(not digest for digest in (req.adapters or {}).values()):
        return "invalid digest format"
    return None


class _Output:
    """Streams progress as NDJSON, or keeps the last object for ``stream: false``."""

    def __init__(self, h: Handler, stream: bool) -> None:
        self.h, self.stream, self.started = h, stream, False
        self.last: dict[str, Any] = {}

    def emit(self, progress: dict[str, Any]) -> None:
        self.last = progress
        if not self.stream:
            return
        try:
            if not self.started:
                self.h.start_stream("application/x-ndjson")
                self.started = True
            self.h.stream_part(go_json(progress).encode() + b"\n")
        except OSError:
            raise AbortError from None  # the client left; stop creating, as Go cancels its context

    def fail(self, failure: CreateFailureError) -> None:
        if self.started:
            self.h.stream_part(go_json({"error": failure.message}).encode() + b"\n")
            self.h.end_stream()
        else:  # nothing sent yet: a real status (worker errors carry no charset)
            self.h.respond_error(failure.status, failure.message, "application/json")

    def finish(self) -> None:
        if self.stream:
            self.h.end_stream()
        else:
            self.h.respond_json(200, self.last, "application/json")


def create(app: App, h: Handler) -> None:
    raw = read_body(h)
    if raw is None:
        return
    value, error = parse_json_body(raw)
    fields: dict[str, Any] = {}
    if error is None:
        fields, error = bind(value, "CreateRequest", CREATE_FIELDS)
    req = CreateRequest.of(fields) if error is None else CreateRequest()
    error = error or pre_stream_problem(req)
    if error is not None:
        h.respond_error(400, error)
        return
    try:
        name = parse_name(req.model)
    except InvalidNameError:
        h.respond_error(400, "invalid model name")
        return
    out = _Output(h, stream=req.stream is not False)
    with app.store.lock:
        name = app.store.existing_name(name)
        app.counters.record_create(name.display_shortest())
        try:
            Pipeline(app, req, name, out).run()
        except CreateFailureError as failure:
            out.fail(failure)
            return
        except (OSError, GGUFError) as exc:
            out.fail(CreateFailureError(str(exc)))
            return
    out.finish()


class Pipeline:
    """The create worker: sources → weights → config/template/… layers → manifest."""

    def __init__(self, app: App, req: CreateRequest, name: Name, out: _Output) -> None:
        self.store: Store = app.store
        self.split_gguf = app.features.split_gguf
        self.validate = app.features.validate_gguf
        self.oci_rootfs = app.features.oci_rootfs
        self.registry: Store | None = app.registry
        self.req, self.name, self.out = req, name, out

    def emit(self, progress: dict[str, Any]) -> None:
        self.out.emit(progress)

    def run(self) -> None:
        req = self.req
        old = self.store.load(self.name)
        config = Config(renderer=req.renderer, parser=req.parser, requires=req.requires)
        if req.from_:
            weights = self._from_model(config)
        elif req.files is not None:
            if detect_type(self.store, req.files) == "safetensors":
                weights = safetensors_model(self, req.files)
            else:
                weights = gguf_layers(self, req.files)
            weights = detect_chat_template(self.store, weights)
        else:
            raise CreateFailureError(NEITHER, 400)
        drafts = self._drafts(req.draft_files) if req.draft_files is not None else []
        if req.adapters:  # made after the drafts but placed before them, as CreateHandler does
            weights += self._adapters(req.adapters, weights)
        weights += drafts
        apply_info(config, req.info or {})
        self._create_model(weights, config)
        if old is not None:
            self.store.remove_unreferenced([old.config, *old.layers])
        self.emit({"status": "success"})

    def _from_model(self, config: Config) -> list[WeightLayer]:
        try:
            base_name = self.store.existing_name(local_ref(self.req.from_))
        except RefError as exc:
            # The create answers any reference it cannot use with one text (create.go).
            status = exc.status
            raise CreateFailureError(INVALID if status == 400 else exc.message, status) from None
        base = self.store.load(base_name)
        if base is None:  # the server pulls it from the registry, inside this stream
            pull(self.store, self.registry, base_name, self.emit)
            base = self.store.load(base_name)
            if base is None:
                raise CreateFailureError("pull model manifest: file does not exist")
        raw_config = self.store.blob_path(base.config.digest).read_bytes()
        base_config = Config.from_json(json.loads(raw_config))
        # CreateHandler takes only these from the base; the rest is derived again from the
        # GGUF layers (a safetensors base has none, so its family and type are left empty).
        for key in ("renderer", "parser", "requires", "model_format", "capabilities"):
            if not getattr(config, key):  # the request's values win
                setattr(config, key, getattr(base_config, key))
        short = base_name.display_shortest()
        weights = []
        for layer in base.layers:
            reused = self.store.existing_layer(layer.digest, layer.media_type, short)
            reused.name = layer.name
            header = None
            if layer.media_type in GGUF_MEDIA_TYPES:
                header = decode_gguf(self.store.blob_path(layer.digest))
            weights.append(WeightLayer(reused, header))
        return weights

    def _drafts(self, files: dict[str, str]) -> list[WeightLayer]:
        try:
            drafts = gguf_layers(self, files, status=400, draft=True)
            quant = self.req.draft_quantize.upper()
            if quant:
                for w in drafts:
                    source = w.header.file_type if w.header else "unknown"
                    # ToTensorType() maps "unknown" to F32, which is not quantized: such a draft
                    # gets the general refusal from _quantize below, as in createModel.
                    if source not in (*UNQUANTIZED, "unknown"):
                        raise CreateFailureError(
                            f"draft quantization requires an unquantized draft model, got {source}"
                        )
                drafts = [self._quantize(w, quant, 400) for w in drafts]
        except CreateFailureError as failure:
            raise CreateFailureError(failure.message, 400) from None
        return drafts

    def _adapters(self, files: dict[str, str], base: list[WeightLayer]) -> list[WeightLayer]:
        try:
            if detect_type(self.store, files) == "safetensors":
                return safetensors_adapter(self, files, base)
            if len(files) > 1:
                raise CreateFailureError("only one adapter is currently supported", 400)
            return detect_chat_template(self.store, gguf_layers(self, files, status=400))
        except CreateFailureError as failure:
            raise CreateFailureError(failure.message, 400) from None

    # --- createModel ------------------------------------------------------------------------

    def _create_model(self, weights: list[WeightLayer], config: Config) -> None:
        req = self.req
        layers: list[Layer] = []
        quant = req.quantize.upper()
        default_stop: list[str] | None = None
        for weight in weights:
            w = self._prepare(weight, config, quant)
            if w.header is not None and w.layer.media_type == MODEL:
                stop = arch_defaults(config, w.header.architecture)
                if stop and "stop" not in (req.parameters or {}):
                    default_stop = stop
            layers.append(w.layer)
        if req.template:
            problem = template_problem(req.template)
            if problem:
                raise CreateFailureError(f"template error: {problem}", 400)
            layers = self._replace(layers, TEMPLATE, req.template.encode())
        if req.system:
            layers = self._replace(layers, SYSTEM, req.system.encode())
        if req.license is not None:
            try:
                texts = license_strings(req.license)
            except ValueError as exc:
                raise CreateFailureError(str(exc)) from None
            for text in texts:
                if text:
                    layers.append(self.store.new_layer(text.encode(), LICENSE))
        params = dict(req.parameters or {})
        if default_stop:
            params["stop"] = default_stop
        for layer in layers:
            if layer.media_type == PARAMS:
                inherited = json.loads(self.store.blob_path(layer.digest).read_bytes())
                for key, value in inherited.items():
                    params.setdefault(key, value)
        if params:
            layers = self._replace(layers, PARAMS, go_json_line(params, sort_keys=True))
        if req.messages:
            body = [{"role": m["role"], "content": m["content"]} for m in req.messages]
            layers = self._replace(layers, MESSAGES, go_json_line(body))
        digests = [layer.digest for layer in layers]
        config_json = config.to_json(digests, rootfs=self.oci_rootfs)
        config_layer = self.store.new_layer(go_json_line(config_json), CONFIG_MEDIA_TYPE)
        for layer in layers:
            if layer.status:
                self.emit({"status": layer.status})
        self.emit({"status": "writing manifest"})
        self.store.write_manifest(self.name, config_layer, layers)

    def _prepare(self, w: WeightLayer, config: Config, quant: str) -> WeightLayer:
        """One weights layer as the create stores it: quantized, or given the validation
        copy, or (a projector) its default type; its metadata folded into ``config``."""
        if w.header is None:
            return w
        is_model = w.layer.media_type == MODEL
        text_only = not any(t.name.startswith(VISION_PREFIXES) for t in w.header.tensors)
        if quant and is_model:
            w = self._quantize(w, quant, 500)
            assert w.header is not None
            config.file_type = w.header.file_type  # an inherited type is now stale
        elif self.validate and w.from_files and is_model and text_only:
            w = self._validation_copy(w)
        assert w.header is not None
        if w.from_files and w.layer.media_type == PROJECTOR and needs_mlp(w.header):
            updates = {MLP_KEY: (T_STRING, "mlp")}
            w = self._rewrite(w, "updating GGUF projector metadata", updates, progress=False)
        assert w.header is not None
        self._derive_config(config, w.header)
        return w

    def _replace(self, layers: list[Layer], media_type: str, data: bytes) -> list[Layer]:
        """``removeLayer`` (deleting blobs nothing references) then append a new layer."""
        removed = [layer for layer in layers if layer.media_type == media_type]
        kept = [layer for layer in layers if layer.media_type != media_type]
        self.store.remove_unreferenced(removed)
        return [*kept, self.store.new_layer(data, media_type)]

    def _derive_config(self, config: Config, header: GGUFView) -> None:
        config.model_format = config.model_format or "gguf"
        config.model_family = config.model_family or header.architecture
        config.model_type = config.model_type or human_number(header.parameter_count)
        config.file_type = config.file_type or header.file_type
        if header.architecture not in config.model_families:
            config.model_families.append(header.architecture)

    def _progress(self, status: str, header: GGUFView, total: int) -> None:
        self.emit({"status": status, "digest": ZERO_DIGEST, "total": total})
        ends = sorted(header.data_offset + t.offset + t.nbytes for t in header.tensors)
        step = max(1, len(ends) // 16)
        for end in ends[step - 1 :: step]:
            self.emit({"status": status, "digest": ZERO_DIGEST, "total": total,
                       "completed": min(end, total)})  # fmt: skip

    def _validation_copy(self, w: WeightLayer) -> WeightLayer:
        header = w.header
        assert header is not None
        total = w.layer.size
        if header.truncated:
            self.emit({"status": "validating GGUF model", "digest": ZERO_DIGEST, "total": total})
            raise CreateFailureError(
                "failed to validate GGUF with llama-quantize without compatibility patches: "
                f"tensor data is truncated (file has {header.file_size} bytes, "
                f"tensor data ends at {header.data_end})"
            )
        return self._rewrite(w, "validating GGUF model", {"emulator.validated": (T_BOOL, True)})

    def _quantize(self, w: WeightLayer, quant: str, status: int) -> WeightLayer:
        header = w.header
        assert header is not None
        target = QUANT_TYPES.get(quant)
        if target is None:
            raise CreateFailureError(
                f"unsupported quantization type {quant} - supported types are "
                "F32, F16, Q4_K_S, Q4_K_M, Q8_0",
                status,
            )
        source = header.file_type
        if source not in UNQUANTIZED:
            message = "quantization is only supported for F16, BF16 and F32 models"
            raise CreateFailureError(message, status)
        if source == target:
            return w
        if header.truncated:
            raise CreateFailureError("llama-quantize failed: exit status 1", status)
        updates = {
            "general.file_type": (T_UINT32, FILE_TYPE_VALUES[target]),
            "emulator.quantized_from": (T_STRING, source),
        }
        return self._rewrite(w, f"quantizing {source} model to {quant}", updates)

    def _rewrite(
        self, w: WeightLayer, status: str, updates: dict[str, Any], *, progress: bool = True
    ) -> WeightLayer:
        """A new GGUF with ``updates``: llama-quantize's copy (with its progress and check), or
        with ``progress=False`` a metadata-only rewrite, announced by one status."""
        header = w.header
        assert header is not None
        path = self.store.blob_path(w.layer.digest)
        entries = rewrite_entries(header, updates)
        if not progress:
            self.emit({"status": status})
        temp = write_temp_gguf(self.store, "COPY", entries, tensor_sources(header, path), header)
        if progress:
            self._progress(status, header, w.layer.size)
        layer = self.store.file_layer(temp, w.layer.media_type)  # no ``from``: a new file
        if progress:
            self.emit({"status": "verifying conversion"})
        return WeightLayer(layer, parse_gguf_blob(self.store.blob_path(layer.digest), 500))
