"""deploy/: every Kubernetes manifest validates against the Kubernetes schemas (offline), probes
point at routes finsight serve has, every Dockerfile passes hadolint, and the manifests agree with
the images: each names an image a Dockerfile here builds, its command line parses under that
image's entrypoint (with finsight's real CLI), its FINSIGHT_* variables are config keys, the files
it names are in the image, and its model comes from a mount or the registry. The venvs built from
each image's requirements file run these command lines in tests/test_deploy_install.py (slow)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.deploy_spec import (DEPLOY, TRITON_REQUIREMENTS, DOCKERFILES, MANIFESTS, REQUIREMENTS, Container, Image, all_containers,
                               images, requirement_lines)

BIN = Path(sys.executable).parent
CONTAINERS = all_containers()


def _validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_there_is_something_to_check():
    names = {p.name for p in MANIFESTS}
    assert {"serve.yaml", "triton.yaml", "train-ddp.yaml", "spark-score.yaml"} <= names
    assert DOCKERFILES


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(manifest):
    result = _validate(manifest)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_a_broken_manifest(tmp_path):
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "serve.yaml").read_text()))
    docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {"x": 1}
    docs[0]["spec"]["replicas"] = "two"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    assert _validate(bad).returncode != 0


def _probe_paths(manifest: Path, container: str) -> set[str]:
    paths = set()
    for doc in yaml.safe_load_all(manifest.read_text()):
        if doc.get("kind") != "Deployment":
            continue
        for spec in doc["spec"]["template"]["spec"]["containers"]:
            if spec["name"] == container:
                paths |= {spec[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe", "startupProbe")
                          if p in spec}
    return paths


def test_serve_probes_point_at_real_routes(tiny_model_dir):
    """The readiness/liveness paths are GET routes of the app `finsight serve` runs."""
    from finsight.config import load_settings
    from finsight.predict import load_predictor
    from finsight.serve import create_app

    settings = load_settings()
    app = create_app(settings, load_predictor(str(tiny_model_dir), settings, backend="torch"))
    routes = {route.path for route in app.routes if "GET" in getattr(route, "methods", ())}
    paths = _probe_paths(DEPLOY / "k8s" / "serve.yaml", "serve")
    assert paths == {"/ready", "/health"}
    assert paths <= routes, routes


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = shutil.which("hadolint") or str(BIN / "hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(dockerfile)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- manifests agree with images


def parse_finsight(args: list[str]):
    """``finsight ARGS`` parsed by the real CLI, as far as the leaf command's context (no
    callback runs); a usage error raises click's UsageError."""
    import typer

    from finsight.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("finsight", list(args))
    command, rest = group, [*ctx._protected_args, *ctx.args]
    while hasattr(command, "commands"):
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
    return ctx


def finsight_commands(argv: list[str]) -> list[list[str]]:
    """The ``finsight`` command lines a container runs: argv itself, or those of a ``bash -c``."""
    if argv[:2] in (["bash", "-c"], ["/bin/sh", "-c"]):
        return [words[1:] for part in argv[2].split("&&") if (words := shlex.split(part))[:1] == ["finsight"]]
    return [argv[1:]] if argv[:1] == ["finsight"] else []


def container_settings(container: Container, image: Image, ctx, monkeypatch):
    """The settings the container's finsight command resolves: the image's ENV, the manifest's
    env, its -c file (the repository's copy of what the image has), --set and the flags."""
    from finsight.cli._app import setting_key
    from finsight.config import load_settings

    for name in [n for n in os.environ if n.startswith("FINSIGHT_")]:
        monkeypatch.delenv(name)
    for name, value in (image.env | container.env).items():
        monkeypatch.setenv(name, value)
    root = ctx.find_root().params
    config = root.get("config")
    flags = {setting_key(p): ctx.params[p.name] for p in ctx.command.params
             if setting_key(p) and ctx.params.get(p.name) is not None}
    return load_settings(REPO_ROOT / config if config else None, root.get("overrides") or [], flags)


def _under(path: str, mounts: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def test_every_image_a_manifest_names_is_built_here():
    built = images()
    for container in CONTAINERS:
        assert container.image in built, (f"{container.manifest.name}: no Dockerfile builds {container.image} "
                                          f"(built here: {sorted(built)})")
    assert set(built) <= {c.image for c in CONTAINERS} | {"finsight:gpu"}, "a Dockerfile no manifest runs"


@pytest.mark.parametrize("container", CONTAINERS, ids=lambda c: f"{c.manifest.stem}-{c.name}")
def test_the_command_line_parses_under_the_image_entrypoint(container, monkeypatch):
    image = images()[container.image]
    argv = container.argv(image)
    commands = finsight_commands(argv)
    for args in commands:
        ctx = parse_finsight(args)  # a usage error fails the test with click's own message
        config = ctx.find_root().params.get("config")
        if config is not None:
            assert image.has_file(str(config)), f"{container.manifest.name}: -c {config} is not in {image.tag}"
        settings = container_settings(container, image, ctx, monkeypatch)
        check_model_source(container, image, ctx.command_path, settings)
    if not commands:  # tritonserver, spark-submit: the files they are given exist where they look
        named = [a.split("=", 1)[-1] for a in argv[1:] if a.split("=", 1)[-1].startswith("/")]
        assert named, argv
        for path in named:
            assert _under(path, container.mounts) or image.has_file(path), \
                f"{container.manifest.name}: {path} is neither mounted nor in {image.tag}"


def check_model_source(container: Container, image: Image, command: str, settings) -> None:
    """An image told not to reach the hub (HF_HUB_OFFLINE=1) gets its model from a mount or the
    registry."""
    if image.env.get("HF_HUB_OFFLINE") != "1":
        return
    key, ref = (("model.name_or_path", str(settings.model.name_or_path)) if command.endswith(" train")
                else ("predict.model", str(settings.predict.model)))
    assert ref.startswith("models:/") or _under(ref, container.mounts), \
        f"{container.manifest.name}: {key}={ref} is neither a models:/ ref nor under a mount {container.mounts}"


def test_the_check_catches_serve_given_twice():
    """The bug this guards against: args `serve ...` under ENTRYPOINT ["finsight", "serve"]."""
    # typer brings its own copy of click: its UsageError, by name
    with pytest.raises(Exception, match=r"unexpected extra argument.*\(serve\)") as usage:
        parse_finsight(["serve", "serve", "--host", "0.0.0.0"])
    assert type(usage.value).__name__ == "UsageError"
    with pytest.raises(Exception, match="No such option: --nope"):
        parse_finsight(["-c", "configs/finbert.yaml", "train", "--nope"])


def test_every_finsight_variable_is_a_config_key():
    from finsight.config import ENV_CONFIG_FILE, ENV_PREFIX, all_keys

    keys = set(all_keys())
    named = [(c.manifest.name, n) for c in CONTAINERS for n in c.env]
    named += [(image.dockerfile.name, n) for image in images().values() for n in image.env]
    checked = [(where, n) for where, n in named if n.startswith(ENV_PREFIX) and n != ENV_CONFIG_FILE]
    assert checked
    for where, name in checked:
        key = name[len(ENV_PREFIX):].lower().replace("__", ".")
        assert key in keys, f"{where}: {name} is not a config key ({key})"


def test_one_requirements_file_per_image():
    """Each Dockerfile installs its own list (from deploy/requirements/; the Triton image the
    package's, which a repository carries), every list there is installed, and the Makefile's
    triton venv reads the Triton image's list (one list, not two)."""
    installed = {image.tag: image.requirements for image in images().values()}
    lists = {p.resolve() for p in REQUIREMENTS.glob("*.txt")} | {TRITON_REQUIREMENTS.resolve()}
    for tag, files in installed.items():
        assert len(files) == 1 and files[0] in lists, f"{tag}: {files}"
        assert requirement_lines(files[0]), files[0]
    assert {f[0] for f in installed.values()} == lists
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "TRITON_REQUIREMENTS := finsight/triton/server-requirements.txt" in makefile
    assert "-r $(TRITON_REQUIREMENTS)" in makefile and "'numpy<2'" not in makefile
    assert "mlflow-skinny>=2.16" in requirement_lines(REQUIREMENTS / "serve-cpu.txt")  # models:/ refs
