"""`finsight triton build`: a Triton model repository that serves raw text, validated before it counts.

Four models, one version directory each::

    <name>_tokenizer    python backend: TEXT (TYPE_STRING) -> input_ids, attention_mask[, token_type_ids]
    <name>_model        the ONNX classifier (onnxruntime_onnx, or python backend running onnxruntime)
    <name>_postprocess  python backend: logits -> probabilities (finsight's label order), label
    <name>              ensemble: TEXT -> probabilities, label

The tokenizer model tokenizes with finsight's own :class:`~finsight.model.Encoder`: its module
is copied into the repository byte for byte, so the server and the local predictors share one
rule. Every ``config.pbtxt`` is parsed against Triton's ``model_config.proto`` before the
repository is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from finsight.artifacts import MANIFEST, check_output_dir, file_hashes, read_manifest, remove_stale, write_manifest
from finsight.errors import BackendError, ConfigError, ModelError
from finsight.labels import LABELS
from finsight.model.ref import Artifact, resolve_artifact
from finsight.model.tokenizer import INPUT_NAMES, TOKENIZER_CONFIG, TOKENIZER_FILE
from finsight.results import TritonBuildResult

if TYPE_CHECKING:
    from finsight.config import Settings, TritonSettings

REPOSITORY_KIND = "triton-repository"
PERF_INPUTS = "perf_inputs.json"
REQUIREMENTS_FILE = "requirements.txt"
_PYTHON_MODELS = Path(__file__).resolve().parent / "python_models"
# finsight's own modules each python model imports, copied unchanged (the package __init__s are
# left empty so that importing them pulls in nothing else): one cleaning rule, one tokenization
# rule and one label rule, on the server and in the local predictors.
_SHIPPED = {"tokenizer": ("errors.py", "model/tokenizer.py", "data/recipe.py"),
            "postprocess": ("errors.py", "labels.py", "predict/scores.py")}


def default_repository(settings: Settings) -> Path:
    return Path(settings.triton.repository or Path(settings.workdir) / "triton")


def build_repository(ref: str, settings: Settings, *,
                     on_step: Callable[[str], None] | None = None) -> TritonBuildResult:
    """Write the repository for ``ref`` (ONNX export, model dir with one beside it, ``models:/``)
    as ``settings.triton`` says; return its manifest."""
    from finsight.io import atomic_dir

    cfg = settings.triton
    step = on_step or (lambda message: None)
    export = onnx_export(ref, settings)
    name = cfg.model_name
    out = default_repository(settings)
    check_output_dir(out, kind=REPOSITORY_KIND, what="triton repository", flag="--repo (triton.repository)")
    inputs = [i["name"] for i in export.manifest.get("inputs", [])] or list(INPUT_NAMES)
    max_length = export.max_length(settings.model.max_length)
    cleaning = export.cleaning
    configs = model_configs(name, cfg, inputs=inputs, max_length=max_length,
                            label_order=export.label_order().tolist(), cleaning=cleaning.as_dict())
    step("checking every config.pbtxt against Triton's model_config.proto")
    for model, text in configs.items():
        parse_config(text, where=f"{model}/config.pbtxt")
    step(f"writing {len(configs)} models to {out}")
    with atomic_dir(out) as tmp:
        for model, text in configs.items():
            (tmp / model / "1").mkdir(parents=True)
            (tmp / model / "config.pbtxt").write_text(text, encoding="utf-8")
        _write_classifier(tmp / f"{name}_model" / "1", export, cfg.classifier_backend)
        _write_tokenizer(tmp / f"{name}_tokenizer" / "1", export)
        shutil.copy(_PYTHON_MODELS / "postprocess.py", tmp / f"{name}_postprocess" / "1" / "model.py")
        _ship(tmp / f"{name}_postprocess" / "1", "postprocess")
        (tmp / PERF_INPUTS).write_text(perf_inputs(), encoding="utf-8")
        (tmp / "README.md").write_text(readme(name, cfg, export, max_length), encoding="utf-8")
        _write_server_files(tmp)
        manifest = {
            "kind": REPOSITORY_KIND, "name": name, "models": sorted(configs),
            "classifier_backend": cfg.classifier_backend, "instance_kind": cfg.kind,
            "instances": cfg.instances, "max_batch_size": cfg.max_batch_size,
            "labels": list(LABELS), "max_length": max_length, "inputs": inputs,
            "cleaning": cleaning.as_dict(), "cleaning_provenance": cleaning.provenance,
            "source": str(export.path), "source_precision": export.manifest.get("precision"),
            "files": file_hashes(tmp),
        }
        write_manifest(tmp, manifest)
    # the ensemble's version directory is empty on purpose
    remove_stale(out, manifest, keep_dirs=lambda p: p.name == "1" and (p.parent / "config.pbtxt").is_file())
    return TritonBuildResult.from_manifest(read_manifest(out) | {"path": str(out.resolve())})


def onnx_export(ref: str, settings: Settings) -> Artifact:
    """The valid ONNX export that ``ref`` names or has beside it."""
    artifact = resolve_artifact(str(ref), settings)
    export = artifact.in_format("onnx")
    if export is None:
        raise ModelError(f"triton build needs an ONNX export, and {artifact.location} is not one "
                         f"(nor has a valid one beside it); run `finsight export {artifact.location} "
                         "--format onnx` first")
    export.require_valid(force=settings.predict.force)
    from finsight.predict import verify_artifact

    verify_artifact(export, settings)  # the files copied into the repository are the validated ones
    return export


def read_repository(path: str | Path) -> dict[str, Any]:
    """The manifest of a repository ``finsight triton build`` wrote."""
    path = Path(path)
    manifest = read_manifest(path) if path.is_dir() else None
    if not manifest or manifest.get("kind") != REPOSITORY_KIND:
        raise ConfigError(f"{path} is not a repository written by `finsight triton build` (no "
                          f"{MANIFEST} with kind={REPOSITORY_KIND}); pass its --repo, or build one")
    return manifest | {"path": str(path.resolve())}


# ---------------------------------------------------------------- config.pbtxt


def model_configs(name: str, cfg: TritonSettings, *, inputs: list[str], max_length: int,
                  label_order: list[int], cleaning: dict[str, bool] | None = None) -> dict[str, str]:
    """Model name -> config.pbtxt text for the four models; ``cleaning`` is the recipe the
    tokenizer model applies (the default one when None)."""
    from finsight.data.recipe import DEFAULT_RECIPE

    recipe = json.dumps(DEFAULT_RECIPE.as_dict() if cleaning is None else cleaning, sort_keys=True)
    batch = cfg.max_batch_size
    tokens = ",\n".join(_tensor(n, "TYPE_INT64", -1) for n in inputs)
    kind = "KIND_GPU" if cfg.kind == "gpu" else "KIND_CPU"
    preferred = [size for size in cfg.preferred_batch_sizes if size <= batch]
    sizes = f"\n  preferred_batch_size: [ {', '.join(map(str, preferred))} ]" if preferred else ""
    classifier_runtime = ('platform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"'
                          if cfg.classifier_backend == "onnxruntime" else 'backend: "python"')
    accelerator = ""
    if cfg.kind == "gpu" and cfg.tensorrt_fp16 and cfg.classifier_backend == "onnxruntime":
        accelerator = """
optimization {
  execution_accelerators {
    gpu_execution_accelerator: [
      { name: "tensorrt"
        parameters { key: "precision_mode" value: "FP16" }
        parameters { key: "max_workspace_size_bytes" value: "1073741824" } }
    ]
  }
}"""
    classifier = f"""# The ONNX classifier: token tensors -> logits in the model's own label order.
name: "{name}_model"
{classifier_runtime}
max_batch_size: {batch}
input [
{tokens}
]
output [
{_tensor("logits", "TYPE_FP32", len(label_order))}
]
dynamic_batching {{{sizes}
  max_queue_delay_microseconds: {cfg.max_queue_delay_us}
}}
instance_group [ {{ count: {cfg.instances} kind: {kind} }} ]{accelerator}
"""
    tokenizer = f"""# Raw text -> cleaned (the model's recipe) -> token tensors, with finsight's
# clean_text and Encoder (shipped in 1/finsight/).
name: "{name}_tokenizer"
backend: "python"
max_batch_size: {batch}
input [
{_tensor("TEXT", "TYPE_STRING", 1)}
]
output [
{tokens}
]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "max_length" value: {{ string_value: "{max_length}" }} }}
parameters {{ key: "cleaning" value: {{ string_value: "{_escape(recipe)}" }} }}
"""
    postprocess = f"""# Logits -> probabilities in finsight's label order ({", ".join(LABELS)}) and the label.
name: "{name}_postprocess"
backend: "python"
max_batch_size: {batch}
input [
{_tensor("logits", "TYPE_FP32", len(label_order))}
]
output [
{_tensor("probabilities", "TYPE_FP32", len(LABELS))},
{_tensor("label", "TYPE_STRING", 1)}
]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "label_order" value: {{ string_value: "{json.dumps(label_order)}" }} }}
parameters {{ key: "labels" value: {{ string_value: "{_escape(json.dumps(list(LABELS)))}" }} }}
"""
    token_map = "\n".join(f'      output_map {{ key: "{n}" value: "{n}" }}' for n in inputs)
    token_in = "\n".join(f'      input_map {{ key: "{n}" value: "{n}" }}' for n in inputs)
    ensemble = f"""# Raw text in, probabilities ({", ".join(LABELS)}) and label out.
name: "{name}"
platform: "ensemble"
max_batch_size: {batch}
input [
{_tensor("TEXT", "TYPE_STRING", 1)}
]
output [
{_tensor("probabilities", "TYPE_FP32", len(LABELS))},
{_tensor("label", "TYPE_STRING", 1)}
]
ensemble_scheduling {{
  step [
    {{
      model_name: "{name}_tokenizer"
      model_version: -1
      input_map {{ key: "TEXT" value: "TEXT" }}
{token_map}
    }},
    {{
      model_name: "{name}_model"
      model_version: -1
{token_in}
      output_map {{ key: "logits" value: "logits" }}
    }},
    {{
      model_name: "{name}_postprocess"
      model_version: -1
      input_map {{ key: "logits" value: "logits" }}
      output_map {{ key: "probabilities" value: "probabilities" }}
      output_map {{ key: "label" value: "label" }}
    }}
  ]
}}
"""
    return {name: ensemble, f"{name}_tokenizer": tokenizer, f"{name}_model": classifier,
            f"{name}_postprocess": postprocess}


def _tensor(name: str, dtype: str, dim: int) -> str:
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {dim} ] }}'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def model_config_pb2():
    """Triton's ``model_config.proto`` compiled, as tritonclient's gRPC package ships it."""
    from finsight.extras import import_optional

    return import_optional("tritonclient.grpc.model_config_pb2", needed_by="finsight triton",
                           error=BackendError)


def parse_config(text: str, *, where: str = "config.pbtxt"):
    """``text`` parsed as a Triton ``ModelConfig`` (protobuf text format); unknown fields, bad
    enums or syntax are a ConfigError naming the file and line."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"{where} is not a valid Triton model config: {exc}") from None


# ---------------------------------------------------------------- files


def _write_classifier(version_dir: Path, export: Artifact, backend: str) -> None:
    shutil.copy(export.model_file, version_dir / "model.onnx")
    if backend == "python":
        shutil.copy(_PYTHON_MODELS / "classifier.py", version_dir / "model.py")


def _write_tokenizer(version_dir: Path, export: Artifact) -> None:
    for name in (TOKENIZER_FILE, TOKENIZER_CONFIG):
        if (export.path / name).is_file():
            shutil.copy(export.path / name, version_dir / name)
    if not (version_dir / TOKENIZER_FILE).is_file():
        raise ModelError(f"{export.path}: no {TOKENIZER_FILE}; the Triton tokenizer model needs the "
                         "fast (Rust) tokenizer the export saves; re-run finsight export")
    shutil.copy(_PYTHON_MODELS / "tokenizer.py", version_dir / "model.py")
    _ship(version_dir, "tokenizer")


def _ship(version_dir: Path, model: str) -> None:
    """Copy the finsight modules ``model`` imports under ``version_dir/finsight/``."""
    for relative, source in shipped_modules(model).items():
        target = version_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        for package in target.relative_to(version_dir).parents:
            if package.parts:
                init = version_dir / package / "__init__.py"
                if not init.exists():
                    init.write_text('"""Shipped by finsight triton build: only what this model '
                                    'imports."""\n', encoding="utf-8")


def shipped_modules(model: str = "tokenizer") -> dict[str, Path]:
    """Path under ``<name>_<model>/1/`` -> finsight's own module it is a copy of."""
    import finsight

    package = Path(finsight.__file__).resolve().parent
    return {f"finsight/{relative}": package / relative for relative in _SHIPPED[model]}


def perf_inputs() -> str:
    """``perf_analyzer --input-data`` JSON: real sentences, one per request row."""
    from finsight.samples import SAMPLE_SENTENCES

    data = [{"TEXT": {"content": [text], "shape": [1]}} for text in SAMPLE_SENTENCES]
    return json.dumps({"data": data}, indent=1, ensure_ascii=False) + "\n"


def _write_server_files(out: Path) -> None:
    """requirements.txt (what the python models import) and serve-local.sh (the bundled server
    without a container): the README's commands use both."""
    from finsight.triton.server import LOCAL_SCRIPT, SERVER_REQUIREMENTS

    shutil.copyfile(SERVER_REQUIREMENTS, out / REQUIREMENTS_FILE)
    shutil.copyfile(LOCAL_SCRIPT, out / LOCAL_SCRIPT.name)
    (out / LOCAL_SCRIPT.name).chmod(0o755)


def readme(name: str, cfg: TritonSettings, export: Artifact, max_length: int) -> str:
    from finsight.triton.server import BUNDLE_PACKAGE

    classifier = ("Triton's onnxruntime backend" if cfg.classifier_backend == "onnxruntime"
                  else "the python backend running onnxruntime")
    return f"""# Triton model repository: `{name}`

Written by `finsight triton build` from `{export.path}` (max_length {max_length}).
Send raw text; get probabilities and a label back.

| model | what it does |
| --- | --- |
| `{name}` | ensemble: `TEXT` (TYPE_STRING, dims [1]) in; `probabilities` (FP32 [3]: {", ".join(LABELS)}) and `label` (TYPE_STRING) out |
| `{name}_tokenizer` | python backend: finsight's own cleaning (the model's recipe, parameter `cleaning`) and tokenizer (shipped in `1/finsight/`), truncation at {max_length} tokens |
| `{name}_model` | the ONNX classifier on {classifier}; dynamic batching, max batch {cfg.max_batch_size} |
| `{name}_postprocess` | python backend: softmax, finsight's label order, the label |

## The Python environment of the python-backend models

The python backend runs `model.py` in the Python found first on `PATH` of the server (or the
model parameter `EXECUTION_ENV_PATH`). It needs what `{REQUIREMENTS_FILE}` lists: **numpy<2**
(numpy 2 crashes the stub on TYPE_STRING inputs while the server still reports ready),
`tokenizers`, and `onnxruntime` (for `--classifier-backend python`).

## Run it

Without a container (Linux x86_64, CPU), with the tritonserver bundled in the PyPI package
`nvidia-pytriton` (it has no onnxruntime backend: build with `--classifier-backend python`).
From this directory, once:

    python3 -m venv ../triton-env
    ../triton-env/bin/pip install -r {REQUIREMENTS_FILE}
    ../triton-env/bin/pip install --no-deps {BUNDLE_PACKAGE}

then, each time (further tritonserver options go at the end):

    TRITON_ENV=../triton-env ./serve-local.sh --http-port=8000 --grpc-port=8001

In a container: the stock NGC image lacks these packages, so build one that installs
`{REQUIREMENTS_FILE}` on top of it (finsight's `deploy/docker/Dockerfile.triton`, from a finsight
checkout: `docker build -f deploy/docker/Dockerfile.triton -t finsight-triton:24.10 .`), then:

    docker run --gpus all --rm -p8000:8000 -p8001:8001 -v "$PWD:/models:ro" \\
      finsight-triton:24.10 tritonserver --model-repository=/models

CPU: the same without `--gpus all`, with the repository built by `--kind cpu`.
`finsight triton check --repo .` starts the bundled server on this repository, checks it
against the local predictor, and stops it.

## Query it

    finsight analyze texts.csv --backend triton --set triton.url=127.0.0.1:8000
    curl -s 127.0.0.1:8000/v2/models/{name}/infer -d \\
      '{{"inputs":[{{"name":"TEXT","datatype":"BYTES","shape":[1,1],"data":["Profit rose."]}}]}}'

## Load test

`{PERF_INPUTS}` holds real sentences in `perf_analyzer`'s input-data format:

    perf_analyzer -m {name} --input-data {PERF_INPUTS} -b 8 --concurrency-range 1:4
"""
