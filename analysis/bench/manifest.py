"""The run folder: create or reopen it, and record what ran on what (manifest.json).

A run folder is self-describing: manifest.json holds the full configuration, the versions of every tool
and library that could be found, the host's CPU, memory and kernel, and the git commit, so a results
folder copied elsewhere still says how it was made.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform as pyplatform
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.bench import ab
from analysis.bench.client import DockerError, docker_inspect
from analysis.bench.config import BenchConfig, PlanItem, config_from_dict, make_plan
from analysis.bench.schema import SCHEMA_VERSION

MANIFEST = "manifest.json"
DONE = "done.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("pandas", "numpy", "pillow", "matplotlib", "scipy", "tensorflow-cpu", "tensorflow", "keras",
             "ai-edge-litert", "onnxruntime", "gunicorn", "bottle", "cheroot", "prometheus-client", "ansible",
             "ansible-core", "kubernetes")


class RunFolderError(RuntimeError):
    """The run folder is missing, not a run folder, or inconsistent; the message names the path."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a JSON file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON ({exc})") from None


class RunFolder:
    """results/<run_id>/ and the few facts about it every step needs."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).resolve()
        self.manifest_path = self.path / MANIFEST
        self.raw = self.path / "raw"
        if not self.manifest_path.exists():
            raise RunFolderError(f"{self.path} is not a run folder (no {MANIFEST}); create one with "
                                 "`python -m analysis.bench init`")
        self.manifest = read_json(self.manifest_path)
        if self.manifest.get("schema_version") != SCHEMA_VERSION:
            raise RunFolderError(f"{self.manifest_path}: schema_version {self.manifest.get('schema_version')!r}, "
                                 f"this code reads {SCHEMA_VERSION}")
        self.config: BenchConfig = config_from_dict({
            "profile": self.manifest["profile"],
            "config": self.manifest["config"],
            "platforms": self.manifest["platforms"],
            "versions": self.manifest.get("config_versions", {}),
            "docker_host": self.manifest.get("docker_host"),
            "kinds": self.manifest.get("kinds", []),
        })

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def payload_path(self) -> Path:
        return self.path / self.manifest["payload"]["path"]

    def plan(self) -> list[PlanItem]:
        return make_plan(self.config, self.path)

    def run_dir(self, run_key: str) -> Path:
        return self.raw / run_key

    def is_done(self, run_key: str) -> bool:
        return (self.raw / run_key / DONE).exists()

    def done_keys(self) -> list[str]:
        if not self.raw.exists():
            return []
        return sorted(p.parent.name for p in self.raw.glob(f"*/{DONE}"))

    def reload(self) -> None:
        self.manifest = read_json(self.manifest_path)

    def save(self) -> None:
        write_json(self.manifest_path, self.manifest)

    def update(self, **fields: Any) -> None:
        """Re-read, change, write: the manifest on disk stays the one source of truth between steps."""
        self.reload()
        self.manifest.update(fields)
        self.save()

    def count_done(self) -> int:
        planned = {item.run_key for item in self.plan()}
        return sum(1 for key in self.done_keys() if key in planned)


# ------------------------------------------------------------------------------------------- creation
def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def create(results_dir: Path, run_id: str, config: BenchConfig) -> RunFolder:
    """Make results_dir/run_id with its manifest and payload. The folder must not exist yet."""
    path = results_dir / run_id
    if path.exists():
        raise RunFolderError(f"{path} already exists")
    path.mkdir(parents=True)
    (path / "raw").mkdir()
    payload = _install_payload(config.knobs["payload"], path / "payload")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "running",
        "started_utc": utc_now(),
        "finished_utc": None,
        "profile": config.profile,
        "config": config.knobs,
        "platforms": {name: p.to_dict() for name, p in config.platforms.items()},
        "payload": {**payload.to_dict(), "path": str(payload.path.relative_to(path))},
        "versions": collect_versions(config),
        "config_versions": config.versions,
        "images": collect_images(config),
        "host": host_facts(),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "docker_host": config.docker_host,
        "kinds": list(config.kind_modules),
        "runs_planned": 0,
        "runs_done": 0,
        "resumed_utc": [],
    }
    write_json(path / MANIFEST, manifest)
    folder = RunFolder(path)
    folder.update(runs_planned=len(folder.plan()))
    return folder


def _install_payload(name: str, directory: Path):  # -> analysis.bench.payloads.Payload
    """A generated payload by name (photo-WxH.jpg), or a copy of the user's JPEG, so the folder is self-contained."""
    from analysis.bench import payloads  # numpy + Pillow: only init needs them

    try:
        payloads.size_of(name)
    except ValueError:
        source = Path(name).expanduser()
        if not source.is_file():
            raise RunFolderError(f"payload {name!r} is neither a generated payload name (photo-WIDTHxHEIGHT.jpg, "
                                 f"e.g. {payloads.DEFAULT_PAYLOAD}) nor an existing file") from None
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / source.name
        shutil.copyfile(source, target)
        try:
            return payloads.describe(target)
        except ValueError as exc:
            raise RunFolderError(str(exc)) from None
    return payloads.write(name, directory)


def same_config(a: BenchConfig, b: BenchConfig) -> list[str]:
    """The differences that would change what a resumed run measures (empty list: same)."""
    diffs = []
    for key in sorted(set(a.knobs) | set(b.knobs)):
        if a.knobs.get(key) != b.knobs.get(key):
            diffs.append(f"config.{key}: {a.knobs.get(key)!r} -> {b.knobs.get(key)!r}")
    for name in sorted(set(a.platforms) | set(b.platforms)):
        pa, pb = a.platforms.get(name), b.platforms.get(name)
        if (pa.to_dict() if pa else None) != (pb.to_dict() if pb else None):
            diffs.append(f"platforms.{name} changed")
    if a.profile != b.profile:
        diffs.append(f"profile: {a.profile!r} -> {b.profile!r}")
    return diffs


# --------------------------------------------------------------------------------- versions and host
def _command_output(argv: list[str], timeout: float = 10.0, env: dict[str, str] | None = None) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def collect_versions(config: BenchConfig) -> dict[str, str]:
    """Every version that can be found; what cannot is left out rather than guessed."""
    versions: dict[str, str] = {"python": pyplatform.python_version()}
    try:
        versions["ab"] = ab.ab_version()
    except ab.AbError:
        pass
    env = {**os.environ, "DOCKER_HOST": config.docker_host}
    docker = _command_output(["docker", "version", "--format", "{{json .}}"], env=env)
    if docker:
        try:
            info = json.loads(docker)
            versions["docker_client"] = info.get("Client", {}).get("Version")
            if info.get("Server"):
                versions["docker"] = info["Server"].get("Version")
        except json.JSONDecodeError:
            pass
    kubectl = _command_output(["kubectl", "version", "--client", "-o", "json"])
    if kubectl:
        try:
            versions["kubectl"] = json.loads(kubectl)["clientVersion"]["gitVersion"]
        except (json.JSONDecodeError, KeyError):
            pass
    for tool, argv in (("minikube", ["minikube", "version", "--short"]), ("kubeless", ["kubeless", "version"])):
        out = _command_output(argv)
        if out:
            versions[tool] = out.splitlines()[-1].strip()
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    versions.update(config.versions)
    return {k: v for k, v in versions.items() if v}


def collect_images(config: BenchConfig) -> dict[str, Any]:
    """The image each serving container runs, by name and ID, when Docker can tell."""
    images: dict[str, Any] = {}
    for name, platform in config.platforms.items():
        if not platform.container:
            continue
        try:
            info = docker_inspect(config.docker_host, platform.container, timeout=5)
        except DockerError as exc:
            images[name] = {"error": str(exc)}
            continue
        images[name] = {
            "container": platform.container,
            "image": info.get("Config", {}).get("Image"),
            "image_id": info.get("Image"),
            "nano_cpus": info.get("HostConfig", {}).get("NanoCpus"),
            "memory_bytes": info.get("HostConfig", {}).get("Memory"),
            "env": [e for e in (info.get("Config") or {}).get("Env") or []
                    if not re.search(r"(?i)secret|token|pass", e)],
        }
    return images


def host_facts() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace") if Path("/proc/cpuinfo").exists() else ""
    meminfo = Path("/proc/meminfo").read_text(errors="replace") if Path("/proc/meminfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags_line = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    mem = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    os_name = None
    if Path("/etc/os-release").exists():
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', Path("/etc/os-release").read_text(), re.MULTILINE)
        os_name = match.group(1) if match else None
    uname = os.uname()
    return {
        "cpu_model": model.group(1).strip() if model else pyplatform.processor() or None,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_flags": sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"}),
        "memory_bytes": int(mem.group(1)) * 1024 if mem else None,
        "kernel": uname.release,
        "arch": uname.machine,
        "os": os_name,
        "cgroup": "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1",
    }


def git_commit() -> str | None:
    return _command_output(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"])


def git_dirty() -> bool | None:
    out = _command_output(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"])
    return None if out is None else bool(out)
