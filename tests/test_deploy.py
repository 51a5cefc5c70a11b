"""deploy/: every Kubernetes manifest validates against the Kubernetes schemas (offline), probes
point at routes finsight serve has, and every Dockerfile passes hadolint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile*"))
BIN = Path(sys.executable).parent


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
