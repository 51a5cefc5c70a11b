"""One settings model for every command.

Precedence, lowest to highest: defaults < YAML file (``--config`` or ``FINSIGHT_CONFIG``)
< env ``FINSIGHT_<SECTION>__<KEY>`` < ``--set section.key=value`` < a command's own flags.
Merges are per key. Every field carries its one-line documentation as its description;
``configs/default.yaml`` is generated from these descriptions (``finsight config init``).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from finsight.errors import ConfigError

ENV_PREFIX = "FINSIGHT_"
ENV_CONFIG_FILE = "FINSIGHT_CONFIG"
Source = Literal["default", "file", "env", "cli"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSettings(Section):
    format: Literal["auto", "csv", "tsv", "jsonl", "json", "parquet", "phrasebank", "hf"] = Field(
        "auto", description="input format; auto detects by suffix and content")
    text_column: str | None = Field(
        None, description="text column; None tries text, sentence, headline, title")
    label_column: str | None = Field(
        None, description="label column; None tries label, sentiment")
    label_map: dict[str, str] = Field(
        default_factory=dict, description="extra label mapping SRC -> negative|neutral|positive")
    keep_columns: list[str] = Field(
        default_factory=list, description="extra input columns (ids, metadata) kept in the splits")
    encoding: str | None = Field(
        None, description="text encoding of the input; None means utf-8 (latin-1 for PhraseBank)")
    val_size: float = Field(
        0.1, ge=0.0, lt=1.0, description="fraction of rows for validation; 0 writes an empty split")
    test_size: float = Field(
        0.1, ge=0.0, lt=1.0, description="fraction of rows for test; 0 writes an empty split")
    seed: int = Field(42, description="seed of the stratified split")
    remove_urls: bool = Field(False, description="strip URLs from texts while cleaning")
    remove_html: bool = Field(False, description="strip HTML tags and unescape entities")
    conflict_rule: Literal["majority", "drop"] = Field(
        "majority",
        description="same text with different labels: keep the majority label (a tie drops it), or drop")
    split_from_files: dict[str, str] = Field(
        default_factory=dict,
        description="pre-split inputs, split -> file; needs train, a missing validation/test is cut from train")
    tokenizer: str | None = Field(
        None, description="tokenizer dir or hub id for token-length stats in the data card")
    out: Path | None = Field(None, description="output dir; None means <workdir>/data/<input name>")

    @field_validator("label_map", "split_from_files", mode="before")
    @classmethod
    def _string_keys(cls, value: Any) -> Any:
        # YAML reads `0: negative` with an int key; labels are matched as strings.
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
        return value


class ModelSettings(Section):
    name_or_path: str = Field(
        "ProsusAI/finbert", description="hub id, local HF dir, or 'tiny' (small BERT built offline)")
    max_length: int = Field(64, ge=8, le=8192, description="max tokens per text (FinBERT trained on 64)")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    tiny_hidden_size: int = Field(32, ge=8, description="hidden size of the 'tiny' model")
    tiny_layers: int = Field(2, ge=1, description="transformer layers of the 'tiny' model")
    tiny_vocab_size: int = Field(2000, ge=200, description="WordPiece vocab size of the 'tiny' model")


class TrainSettings(Section):
    learning_rate: float = Field(2e-5, gt=0, description="peak AdamW learning rate (FinBERT: 2e-5)")
    max_epochs: int = Field(4, ge=1, description="maximum training epochs")
    batch_size: int = Field(32, ge=1, description="training batch size per device")
    eval_batch_size: int = Field(128, ge=1, description="validation/test batch size")
    seed: int = Field(42, description="global seed; the same seed repeats a run")
    warmup_ratio: float = Field(0.2, ge=0.0, lt=1.0, description="fraction of steps for linear warmup")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay")
    accumulate_grad_batches: int = Field(1, ge=1, description="gradient accumulation steps")
    gradient_clip_val: float | None = Field(1.0, description="gradient norm clipping; None disables")
    layer_lr_decay: float = Field(
        1.0, gt=0.0, le=1.0, description="discriminative lr: each lower layer gets lr * decay")
    gradual_unfreeze: bool = Field(
        False, description="start with the head; thaw one more layer every third of an epoch (FinBERT)")
    class_weighted_loss: bool = Field(False, description="weight the loss by inverse class frequency")
    group_by_length: bool = Field(True, description="batch texts of similar length to cut padding")
    early_stopping_patience: int = Field(
        2, ge=0, description="epochs without val macro-F1 gain before stopping; 0 disables")
    precision: Literal["auto", "32", "32-true", "16-mixed", "bf16-mixed", "bf16-true"] = Field(
        "auto", description="auto: bf16-mixed on GPUs that support it, else 16-mixed; 32 on CPU")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu, ...")
    devices: str = Field("auto", description="Lightning devices: auto, 1, 4, '0,1', ...")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, fsdp, ...")
    num_nodes: int = Field(1, ge=1, description="Lightning nodes for multi-node training")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    run_name: str | None = Field(None, description="run name; None makes one from model and time")
    out: Path | None = Field(None, description="output dir; None means <workdir>/runs/<run name>")

    @field_validator("precision", "accelerator", "devices", "strategy", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        # YAML and --set read `precision: 32` or `devices=2` as numbers; Lightning takes text.
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class ExportSettings(Section):
    format: Literal["onnx", "torchscript"] = Field("onnx", description="export format")
    quantize: Literal["none", "int8"] = Field("none", description="dynamic int8 quantization (ONNX)")
    optimize: bool = Field(True, description="ONNX Runtime transformer graph fusion (ONNX)")
    fp16: bool = Field(False, description="convert the ONNX graph to fp16 (GPU targets)")
    opset: int = Field(17, ge=11, description="ONNX opset")
    onnx_exporter: Literal["torchscript", "dynamo"] = Field(
        "torchscript", description="torch.onnx exporter: torchscript (legacy; fuses fully in ORT) or dynamo")
    validate_data: Path | None = Field(
        None, description="text file (optional label column) or prep dir to validate on; None: the run's "
        "validation split, else the bundled sample sentences")
    validate_max_rows: int = Field(512, ge=16, description="rows used for validation")
    max_abs_diff: float = Field(1e-4, ge=0.0, description="fp32/TorchScript gate: max |logit diff|")
    max_abs_diff_fp16: float = Field(1e-2, ge=0.0, description="fp16 gate: max |logit diff|")
    min_agreement: float = Field(1.0, ge=0.0, le=1.0, description="fp32/fp16 gate: label agreement")
    int8_min_agreement: float = Field(0.99, ge=0.0, le=1.0, description="int8 gate: label agreement")
    int8_max_f1_change: float = Field(0.01, ge=0.0, description="int8 gate: max |macro-F1 change|")
    int8_per_channel: bool = Field(True, description="int8: one weight scale per output channel")
    int8_search: bool = Field(
        True, description="int8: search candidates for the fastest graph passing the gates (else fp32); false: one fixed dynamic recipe")
    int8_candidates: list[Literal["dynamic", "dynamic_sensitive", "dynamic_ffn_fp32", "static_minmax",
                                  "static_percentile", "static_entropy"]] = Field(
        ["dynamic", "dynamic_sensitive", "dynamic_ffn_fp32", "static_minmax", "static_percentile",
         "static_entropy"], description="int8 search: candidate kinds, tried in this order")
    int8_max_candidates: int = Field(10, ge=1, description="int8 search: stop after this many candidates")
    int8_max_seconds: float = Field(600.0, gt=0, description="int8 search: stop starting candidates after this many seconds")
    int8_calibration_rows: int = Field(
        128, ge=1, description="int8 search: texts static candidates calibrate on (train split, else validation rows)")
    int8_keep_ffn_fp32: bool = Field(
        True, description="int8 fixed recipe (int8_search=false): keep the MatMul after each GELU in fp32")
    int8_reduce_range: bool | None = Field(
        None, description="int8: 7-bit weights; None: on when this CPU lacks VNNI (u8s8 saturation)")
    out: Path | None = Field(None, description="output dir; None means <model>/../export-<format>[-fp16|-int8]")


class RegistrySettings(Section):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (sqlite:///..., http://host:5000); None means sqlite:///<workdir>/mlflow.db")
    experiment: str = Field("finsight", description="MLflow experiment name")
    model_name: str = Field("finsight-sentiment", description="registered model name (finsight register --name)")
    track_runs: bool = Field(
        True, description="log train runs to MLflow; false trains without MLflow (register still uses it)")
    cache: Path | None = Field(
        None, description="local copies of models:/ versions; None means <workdir>/registry-cache")
    timeout_s: float = Field(
        5.0, gt=0, description="seconds to keep retrying an http(s) tracking server that does not answer")


class TritonSettings(Section):
    url: str = Field(
        "127.0.0.1:8000", description="Triton endpoint host:port (the HTTP or the gRPC port, as triton.protocol says)")
    protocol: Literal["http", "grpc"] = Field("http", description="how the triton backend talks to the server")
    model_name: str = Field(
        "finsight", description="the ensemble's name: what triton build names it and the triton backend calls")
    repository: Path | None = Field(None, description="model repository dir; None: <workdir>/triton")
    max_batch_size: int = Field(
        64, ge=1, description="max batch size in the Triton model configs; the client's batches too")
    timeout_s: float = Field(30.0, gt=0, description="client connection and request timeout in seconds")
    concurrency: int = Field(
        4, ge=1, description="requests the triton backend keeps in flight; more wait on the client, not the server")
    kind: Literal["cpu", "gpu"] = Field(
        "cpu", description="instance kind of the classifier: KIND_CPU or KIND_GPU")
    instances: int = Field(1, ge=1, description="instances of the classifier (per GPU for kind gpu)")
    classifier_backend: Literal["onnxruntime", "python"] = Field(
        "onnxruntime",
        description="onnxruntime: Triton's ORT backend; python: a python-backend model running onnxruntime")
    preferred_batch_sizes: list[int] = Field(
        default_factory=lambda: [8, 32], description="dynamic batching: batch sizes the scheduler aims for")
    max_queue_delay_us: int = Field(
        1000, ge=0, description="dynamic batching: longest a request waits for others, in microseconds")
    tensorrt_fp16: bool = Field(False, description="kind gpu, onnxruntime: add the TensorRT fp16 accelerator")
    server_env: Path | None = Field(
        None, description="Python env (numpy<2) of the python-backend models when finsight starts "
        "tritonserver; None: <venv>-triton, built by make install")
    start_timeout_s: float = Field(
        60.0, gt=0, description="how long a started tritonserver may take to be ready")
    max_abs_diff: float = Field(
        1e-4, ge=0.0, description="triton check: max |probability diff| against the local ONNX predictor")
    max_abs_diff_int8: float = Field(
        1e-2, ge=0.0, description="triton check on an int8 export: max |probability diff| (int8 quantizes "
        "activations per batch, so the server's batching moves probabilities a little)")


class PredictSettings(Section):
    model: str | None = Field(
        None, description="model ref: model/export dir, hub id, models:/name@alias; None: model.name_or_path")
    backend: Literal["auto", "torch", "onnx", "torchscript", "triton"] = Field(
        "auto", description="auto, torch, onnx, torchscript or triton; auto: an export dir's own format; for a "
        "model dir a valid ONNX export beside it on CPU, else torch")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1")
    batch_size: int | None = Field(
        None, ge=1, description="texts per inference batch; None: 64 on CPU, 1024 on GPU")
    num_threads: int = Field(0, ge=0, description="intra-op threads; 0 means the core count")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="torch backend dtype; auto: fp16 on GPU, fp32 on CPU")
    force: bool = Field(False, description="load an export whose validation failed")
    verify: bool = Field(
        True, description="check the model's files against the sha256 list in its finsight.json before "
                          "loading (unchanged files are trusted by size, mtime, ctime and inode); false "
                          "skips it, with a warning")
    spin_wait: bool = Field(
        True, description="ONNX Runtime threads spin while idle: faster for one steady caller; "
                          "finsight serve turns it off unless set (the cores serve requests too)")


class AnalyzeSettings(Section):
    """What `analyze` does with files; the predictor itself is configured by ``predict.*``."""

    text_column: str | None = Field(None, description="text column; None tries common names")
    id_column: str | None = Field(None, description="id column copied to the output")
    keep_columns: list[str] = Field(default_factory=list, description="input columns copied to the output")
    group_by: list[str] = Field(default_factory=list, description="columns to summarise sentiment by, in <out>.summary.<ext>")
    mode: Literal["sentence", "document"] = Field(
        "sentence", description="sentence: truncate at model.max_length; document: split, score, aggregate")
    write_sentences: bool = Field(False, description="document mode: also write per-sentence rows to <out>.sentences.<ext>")
    explain: int = Field(
        0, ge=0, le=100, description="add top_words: each row's K most influential words with signed contributions "
        "to its label (word occlusion, K+1.. model inputs per row); 0: off")
    chunk_rows: int | None = Field(
        None, ge=1, description="rows read per streaming chunk; None: 8192 on CPU, 32768 on a GPU")
    encoding: str | None = Field(None, description="text encoding of the inputs; None: data.encoding, else utf-8")
    out: Path | None = Field(None, description="output file, its format from the suffix (.csv .tsv .jsonl .parquet); None means "
        "<workdir>/analyze/<input>.scored.<ext>")
    time_column: str | None = Field(
        None, description="timestamp column (ISO 8601 or epoch s/ms; no offset: analyze.timezone); the "
                          "summary becomes a time-bucketed index per group-by columns")
    time_bucket: str = Field(
        "1d", description="index bucket: 1d (trading days: session_close, calendar) or an intraday "
                          "step such as 1h, 15min, labelled by its end")
    timezone: str = Field("UTC", description="IANA zone buckets and the session close are in, e.g. America/New_York")
    session_close: str | None = Field(
        None, description="1d buckets: HH:MM local close; news at or after it counts for the next "
                          "trading day; None: midnight")
    calendar: str = Field(
        "weekdays", description="1d buckets: trading days: weekdays, all, or a file of holiday dates "
                                "(YYYY-MM-DD, one a line, # comments), skipped like weekends")
    rolling: int | None = Field(
        None, ge=1, description="index: also rolling_sentiment, over this many buckets (count-weighted)")
    halflife: float | None = Field(
        None, gt=0, description="index: also ewm_sentiment, exponentially weighted with this half-life in buckets")
    fill: bool = Field(False, description="index: write buckets with no rows too (count 0), a regular series per group")
    plot: Path | None = Field(None, description="index: also draw it to this PNG, top plot_groups groups by count")
    plot_groups: int = Field(8, ge=1, description="index --plot: how many groups (most rows first) are drawn")

    @field_validator("session_close", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> Any:
        # YAML 1.1 (and so --set) reads `16:00` as the sexagesimal number 960: minutes.
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value // 60:02d}:{value % 60:02d}"
        return value


class PipelineSettings(Section):
    name: str = Field("pipeline", description="run name: outputs go to <workdir>/{data,runs,eval}/<name>")
    inputs: list[Path] = Field(default_factory=list, description="labelled files the prep stage reads")
    export_precisions: list[Literal["fp32", "fp16", "int8"]] = Field(
        default_factory=lambda: ["fp32", "int8"], description="ONNX exports the export stage writes, each validated")
    skip: list[Literal["evaluate", "register", "triton", "analyze"]] = Field(
        default_factory=list, description="stages to leave out, e.g. [triton]")
    alias: str | None = Field("champion", description="alias the register stage gives the version it creates")
    analyze_inputs: list[Path] = Field(
        default_factory=list, description="files the analyze stage scores; empty skips the stage")


class ServeSettings(Section):
    """`finsight serve`: the HTTP service; the predictor itself is configured by ``predict.*``."""

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="port to bind")
    workers: int = Field(1, ge=1, description="server processes, each with its own predictor")
    max_batch_size: int = Field(64, ge=1, description="max texts per micro-batch (one model call)")
    max_wait_ms: float = Field(
        2.0, ge=0.0, description="max wait to fill a micro-batch while other requests are in flight")
    model_batch_size: int = Field(
        8, ge=1, description="CPU, when predict.batch_size is unset: a micro-batch runs sorted by "
                             "length in padded batches of this many (mixed lengths waste less padding)")
    max_queue: int = Field(
        256, ge=1, description="requests waiting for the model; past it requests get 503 + Retry-After")
    max_concurrency: int | None = Field(
        None, ge=1, description="requests in progress at once (reading, queued, scored); past it, or "
                                "with the queue full, a scoring request gets 503 + Retry-After on "
                                "arrival, before its body is read; None: 2 * max_queue + 8")
    read_timeout_s: float = Field(
        10.0, gt=0, description="seconds a client may take to send a whole request (line, headers, "
                                "body); a connection that stalls mid-request is closed")
    cache_size: int = Field(
        10000, ge=0, description="LRU cache entries (text + model version -> scores); 0 disables")
    max_text_chars: int = Field(2000, ge=1, description="longer texts are refused (422)")
    max_document_chars: int = Field(
        100_000, ge=1, description="longer /v1/analyze documents are refused (422)")
    max_texts_per_request: int = Field(
        256, ge=1, description="texts (or documents) per batch/analyze request; more are refused (422)")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies are refused (413)")
    api_keys: list[str] = Field(
        default_factory=list, description="accepted X-API-Key values; empty (and no keys file) means no auth")
    api_keys_file: Path | None = Field(
        None, description="file with one accepted API key per line (# comments), added to api_keys")
    open_paths: list[str] = Field(
        default_factory=lambda: ["/", "/health", "/ready", "/metrics", "/schema"],
        description="paths (and their subpaths: /health covers /health/detailed) served without an "
                    "API key and without rate limit")
    rate_limit: str | None = Field(
        None, description="requests per API key (else client IP), e.g. '600/minute', counted across "
                          "all --workers processes; None disables")
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed by CORS, e.g. https://app.example.com; empty: none")
    access_log: bool = Field(True, description="one JSON line per request on stderr (never the text)")
    warmup_texts: int = Field(
        16, ge=0, description="texts scored at start-up before /ready answers 200; 0 skips warm-up")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="on SIGTERM: seconds to finish queued requests before exiting")
    request_timeout_s: float = Field(
        10.0, gt=0, description="per-request deadline: past it the client gets 504 and a request still "
                                "queued is dropped from its micro-batch (never scored)")
    breaker_failures: int = Field(
        5, ge=1, description="consecutive failed model calls that open the circuit: scoring answers 503 "
                             "+ Retry-After at once and /ready 503 until a probe call succeeds")
    breaker_reset_s: float = Field(
        5.0, gt=0, description="seconds an open circuit waits before one probe call (half-open) may close it")

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate_limit(value)
        return value


RATE_UNITS = ("second", "minute", "hour", "day")


def parse_rate_limit(value: str) -> tuple[str, int]:
    """'600/minute' -> ('minute', 600)."""
    count, _, unit = str(value).partition("/")
    unit = unit.strip().lower().removesuffix("s")
    if not count.strip().isdigit() or int(count) < 1 or unit not in RATE_UNITS:
        raise ValueError(f"rate limit must look like '600/minute' (a count >= 1 per "
                         f"{', '.join(RATE_UNITS)}), got {value!r}")
    return unit, int(count)


class Settings(BaseSettings):
    """The resolved configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
        validate_assignment=True)

    workdir: Path = Field(Path("finsight-work"), description="where commands write outputs by default")
    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    predict: PredictSettings = Field(default_factory=PredictSettings)
    analyze: AnalyzeSettings = Field(default_factory=AnalyzeSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    _sources: dict[str, Source] = PrivateAttr(default_factory=dict)
    _deprecations: list[str] = PrivateAttr(default_factory=list)

    @property
    def sources(self) -> dict[str, Source]:
        """Where each dotted key's value came from."""
        return dict(self._sources)

    @property
    def deprecations(self) -> list[str]:
        """One message per deprecated key that was used (file, env or --set)."""
        return list(self._deprecations)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # load_settings reads and merges every layer itself (env included, renames applied);
        # the model only validates what it is given.
        return (init_settings,)

    def to_json(self) -> str:
        """The values and where each came from, for another process (a ``serve`` worker) to
        rebuild with :meth:`from_json`: rules such as "unless the user set it" need the sources."""
        return json.dumps({"values": self.model_dump(mode="json"), "sources": self._sources,
                           "deprecations": self._deprecations})

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        payload = json.loads(text)
        settings = cls.model_validate(payload["values"])
        settings._sources = dict(payload.get("sources") or {})
        settings._deprecations = list(payload.get("deprecations") or [])
        return settings

    def tracking_uri(self) -> str:
        uri = self.registry.tracking_uri
        if uri:
            return uri
        from finsight.paths import mlflow_db

        return f"sqlite:///{mlflow_db(self.workdir)}"


def section_names() -> list[str]:
    return [name for name, f in Settings.model_fields.items() if _submodel(f.annotation)]


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def all_keys() -> list[str]:
    """Every dotted key, in definition order."""
    keys = []
    for name, field in Settings.model_fields.items():
        sub = _submodel(field.annotation)
        keys.extend(f"{name}.{k}" for k in sub.model_fields) if sub else keys.append(name)
    return keys


# Keys that moved; the old names keep working, with a warning, until REMOVED_IN.
RENAMED: dict[str, str] = {f"predict.{key}": f"analyze.{key}" for key in AnalyzeSettings.model_fields}
RENAMED["registry.enabled"] = "registry.track_runs"
REMOVED_IN = "0.3"
_RENAME_REASONS = {
    "predict.": "the analyze settings moved out of predict.*, which configures the predictor alone",
    "registry.enabled": "it only ever switched run tracking on and off; the registry is always there",
}


def deprecation_message(old: str) -> str:
    why = next(reason for prefix, reason in _RENAME_REASONS.items() if old.startswith(prefix))
    return (f"config key '{old}' is deprecated: it is now '{RENAMED[old]}' ({why}); the old name "
            f"works until finsight {REMOVED_IN}")


def _apply_renames(flat: Mapping[str, Any], where: Mapping[str, str],
                   notes: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    renamed, origin = {}, {}
    for key, value in flat.items():
        new = RENAMED.get(key, key)
        if new != key:
            notes.append(f"{deprecation_message(key)} ({where[key]})")
        renamed[new], origin[new] = value, where[key]
    return renamed, origin


def explain_key(key: str) -> list[str]:
    """The keys ``finsight config show KEY`` lists: the key, a section's keys, or a renamed
    key's new name; an unknown key is an error with close matches."""
    if key in RENAMED:
        return [RENAMED[key]]
    if key in section_names():
        return [k for k in all_keys() if k.startswith(f"{key}.")]
    _check_keys({key: None}, {key: "asked for"})
    return [key]


def field_info(dotted: str):
    head, _, tail = dotted.partition(".")
    field = Settings.model_fields[head]
    return _submodel(field.annotation).model_fields[tail] if tail else field


# ---------------------------------------------------------------- layers


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted in Settings.model_fields and isinstance(value, Mapping) and _submodel(
                Settings.model_fields[dotted].annotation):
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        head, _, tail = dotted.partition(".")
        if tail:
            tree.setdefault(head, {})[tail] = value
        else:
            tree[head] = value
    return tree


def _check_keys(flat: Mapping[str, Any], origin: Mapping[str, str]) -> None:
    known = all_keys()
    for key in flat:
        if key in known:
            continue
        if key in section_names():
            raise ConfigError(f"config key '{key}' ({origin[key]}) is a section; "
                              f"set one of its keys as '{key}.<key>'")
        hint = difflib.get_close_matches(key, known, n=2, cutoff=0.75)
        suggestion = f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else \
            "; run 'finsight config show' to list valid keys"
        raise ConfigError(f"unknown config key '{key}' ({origin[key]}){suggestion}")


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into flat dotted keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing YAML file to --config")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: "
                          f"{getattr(exc, 'problem', exc)}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, "
                          f"got {type(tree).__name__}")
    return _flatten(tree)


def read_env() -> dict[str, Any]:
    """Read FINSIGHT_<SECTION>__<KEY> variables into flat dotted keys."""
    names = [name for name in os.environ
             if name.upper().startswith(ENV_PREFIX) and name.upper() != ENV_CONFIG_FILE]
    keys = {RENAMED.get(_env_to_key(n), _env_to_key(n)): f"from env {n}" for n in names}
    _check_keys(dict.fromkeys(keys), keys)
    # pydantic-settings decodes the values (JSON for lists and dicts, plain strings otherwise);
    # it does not know the old names of renamed keys, so their JSON is decoded here.
    flat = _flatten(EnvSettingsSource(Settings, case_sensitive=False)())
    for key, value in flat.items():
        if key in RENAMED and isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                flat[key] = json.loads(value)
    return flat


def _env_to_key(name: str) -> str:
    return name[len(ENV_PREFIX):].lower().replace("__", ".")


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Parse ``section.key=value`` strings; values are YAML scalars, never evaluated."""
    flat: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set '{item}' is not of the form section.key=value")
        try:
            flat[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            flat[key] = raw
    return flat


def load_settings(
    config_file: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the settings from every layer and remember where each value came from.

    ``flags`` are a command's own options as dotted keys; ``None`` values are "not given".
    """
    config_file = config_file or os.environ.get(ENV_CONFIG_FILE) or None
    layers: list[tuple[Source, dict[str, Any], dict[str, str]]] = []
    if config_file:
        file_flat = read_config_file(config_file)
        layers.append(("file", file_flat, {k: f"in {config_file}" for k in file_flat}))
    env_flat = read_env()
    layers.append(("env", env_flat,
                   {k: f"from env {ENV_PREFIX}{k.upper().replace('.', '__')}" for k in env_flat}))
    set_flat = parse_overrides(overrides)
    layers.append(("cli", set_flat, {k: f"from --set {k}=..." for k in set_flat}))
    flag_flat = {k: v for k, v in (flags or {}).items() if v is not None}
    layers.append(("cli", flag_flat, {k: "from a command flag" for k in flag_flat}))

    merged: dict[str, Any] = {}
    sources: dict[str, Source] = {key: "default" for key in all_keys()}
    origin: dict[str, str] = {}
    notes: list[str] = []
    for source, flat, where in layers:
        flat, where = _apply_renames(flat, where, notes)
        _check_keys(flat, where)
        merged.update(flat)
        origin.update(where)
        sources.update({key: source for key in flat})
    try:
        settings = Settings.model_validate(_unflatten(merged))
    except ValidationError as exc:
        raise _config_error(exc, origin) from None
    settings._sources = sources
    settings._deprecations = list(dict.fromkeys(notes))
    return settings


def _config_error(exc: ValidationError, origin: Mapping[str, str]) -> ConfigError:
    err = exc.errors()[0]
    dotted = ".".join(str(p) for p in err["loc"][:2])
    where = origin.get(dotted, "")
    value = err.get("input")
    shown = f" got {value!r}" if not isinstance(value, dict) else ""
    return ConfigError(f"config key '{dotted}' {where}: {err['msg'].lower()};{shown}".rstrip(";"))


# ---------------------------------------------------------------- rendering


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    return settings.model_dump(mode="json")


def default_yaml() -> str:
    """configs/default.yaml: every key with its default and its one-line description."""
    defaults = Settings.model_construct().model_dump(mode="json")  # defaults only: no env, no file
    lines = ["# finsight default configuration: every key, its default and what it does.",
             "# Generated by `finsight config init`; tests fail when it drifts from finsight/config.py.",
             "# Precedence: defaults < this file (--config / FINSIGHT_CONFIG) < FINSIGHT_<SECTION>__<KEY>",
             "# < --set section.key=value < command flags.", ""]
    for name, field in Settings.model_fields.items():
        sub = _submodel(field.annotation)
        if not sub:
            lines.append(f"{name}: {_yaml_scalar(defaults[name])}  # {field.description}")
            continue
        lines.append(f"\n{name}:")
        for key, sub_field in sub.model_fields.items():
            lines.append(f"  {key}: {_yaml_scalar(defaults[name][key])}  # {sub_field.description}")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()
