"""What deploy/ says, read from its own files: each Dockerfile's tag (from the `docker build -t`
line in its comments), final-stage ENTRYPOINT/CMD/ENV/WORKDIR/COPY targets and the requirements
files it installs; each manifest's containers. The deploy tests and the image-venv tests read
these, so neither can drift from the files."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile*"))
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
REQUIREMENTS = DEPLOY / "requirements"
TRITON_REQUIREMENTS = REPO_ROOT / "finsight" / "triton" / "server-requirements.txt"


@dataclass
class Image:
    dockerfile: Path
    tag: str
    base: str
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    copies: dict[str, str] = field(default_factory=dict)  # image path -> repository path
    requirements: list[Path] = field(default_factory=list)

    def has_file(self, path: str) -> bool:
        """Whether ``path`` (absolute, or relative to WORKDIR) is in the image, and its source exists."""
        try:
            return _source_of(str(PurePosixPath(self.workdir) / path), self.copies).exists()
        except AssertionError:
            return False


def _instructions(text: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _exec_form(value: str) -> list[str]:
    return json.loads(value) if value.startswith("[") else ["/bin/sh", "-c", value]


def read_image(dockerfile: Path) -> Image:
    text = dockerfile.read_text(encoding="utf-8")
    tags = re.findall(rf"docker build -f deploy/docker/{re.escape(dockerfile.name)} -t (\S+) \.", text)
    assert len(tags) == 1, f"{dockerfile.name}: its comments give no (or several) `docker build -t` lines"
    steps = _instructions(text)
    final = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    image = Image(dockerfile=dockerfile, tag=tags[0], base=steps[final][1].split()[0])
    workdir, copies = "/", {}
    for i, (word, rest) in enumerate(steps):
        if word == "FROM":
            workdir, copies = "/", {}
        elif word == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / rest)
        elif word == "COPY" and not rest.startswith("--from"):
            copies |= _copy_targets(rest, workdir)
        elif word == "RUN":
            image.requirements += [_source_of(str(PurePosixPath(workdir) / p), copies)
                                   for p in re.findall(r"-r (\S+)", rest)]
        if i < final:
            continue
        if word == "ENTRYPOINT":
            image.entrypoint = _exec_form(rest)
        elif word == "CMD":
            image.cmd = _exec_form(rest)
        elif word == "ENV":
            image.env |= dict(item.split("=", 1) for item in shlex.split(rest))
    image.workdir, image.copies = workdir, copies
    return image


def _copy_targets(rest: str, workdir: str) -> dict[str, str]:
    """Image path -> repository path of one COPY instruction."""
    *sources, target = shlex.split(rest)
    dest = PurePosixPath(workdir) / target
    if target.endswith("/") or len(sources) > 1:
        return {str(dest / PurePosixPath(s).name): s for s in sources}
    return {str(dest): sources[0]}


def _source_of(image_path: str, copies: dict[str, str]) -> Path:
    """The repository file an image path was COPYed from."""
    target = PurePosixPath(image_path)
    for dest, source in copies.items():
        dest = PurePosixPath(dest)
        if target == dest:
            return (REPO_ROOT / source).resolve()
        if dest in target.parents:
            return (REPO_ROOT / source / target.relative_to(dest)).resolve()
    raise AssertionError(f"{image_path} is installed but never COPYed into the image")


def images() -> dict[str, Image]:
    return {image.tag: image for image in map(read_image, DOCKERFILES)}


@dataclass
class Container:
    manifest: Path
    name: str
    image: str
    command: list[str] | None
    args: list[str] | None
    env: dict[str, str]
    mounts: list[str]

    def argv(self, image: Image) -> list[str]:
        """What the container runs: Kubernetes' command replaces ENTRYPOINT (and drops CMD), args
        replace CMD."""
        if self.command is not None:
            return [*self.command, *(self.args or [])]
        return [*image.entrypoint, *(image.cmd if self.args is None else self.args)]


def containers(manifest: Path) -> list[Container]:
    found = []
    for doc in yaml.safe_load_all(manifest.read_text(encoding="utf-8")):
        spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            found.append(Container(manifest=manifest, name=c["name"], image=c["image"], command=c.get("command"),
                                   args=c.get("args"), env={e["name"]: e.get("value", "") for e in c.get("env", [])},
                                   mounts=[m["mountPath"] for m in c.get("volumeMounts", [])]))
    return found


def all_containers() -> list[Container]:
    return [c for manifest in MANIFESTS for c in containers(manifest)]


def requirement_lines(path: Path) -> list[str]:
    """A requirements file's lines, comments and blanks dropped."""
    return [line.split(" #")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
