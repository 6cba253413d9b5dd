"""Fixtures shared by every suite: a real trained model, real JPEGs, the real Docker engine.

The model is trained once per test session on a small synthetic Yelp-format set (real TensorFlow, real
files), then exported to LiteRT, so every suite that serves predictions uses a genuine artefact.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = os.environ.get("KDE_TEST_BASE_IMAGE", "kubeless-dl-eval/base:bookworm-py311")


def _run_model_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "model", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory) -> Path:
    """model.keras + labels.json + metrics.json + model.tflite, trained here for 4 epochs on 50 photos/class."""
    work = tmp_path_factory.mktemp("trained")
    data, out = work / "data", work / "model"
    _run_model_cli("synth", "--out", str(data), "--images-per-class", "50", "--seed", "3")
    _run_model_cli("train", "--data", str(data), "--out", str(out), "--epochs", "4", "--seed", "3")
    _run_model_cli("export", "--model", str(out / "model.keras"), "--check-images", "20")
    return out


@pytest.fixture(scope="session")
def sample_jpegs() -> dict[str, bytes]:
    """A few real-looking JPEGs of typical photo sizes, one per class."""
    from model import LABELS
    from model.synth import jpeg_bytes, synth_photo

    rng = np.random.default_rng(99)
    sizes = [(500, 375), (640, 480), (1024, 768), (375, 500), (800, 600)]
    return {label: jpeg_bytes(synth_photo(label, rng, size)) for label, size in zip(LABELS, sizes, strict=True)}


def docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Skip (or, under CI, fail) when no Docker engine answers: CI starts one, so a skip there is a bug."""
    if not docker_engine_available():
        message = "no Docker engine answers `docker info`; start dockerd (see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def base_image(docker_engine) -> str:
    """The local debootstrap Python base image (no registry is reachable here); built once if missing."""
    subprocess.run([str(ROOT / "scripts" / "debootstrap-base-image.sh"), BASE_IMAGE], check=True, timeout=900)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """build/wheelhouse with the serving requirements (downloaded once)."""
    subprocess.run([str(ROOT / "scripts" / "build-wheelhouse.sh"), sys.executable], check=True, timeout=1800)
    return ROOT / "build" / "wheelhouse"


FUNCTION_CONTEXT_MODEL = "build/test-function-model"  # inside the build context (.dockerignore lets it through)


@pytest.fixture(scope="session")
def function_image(base_image, wheelhouse, trained_model_dir) -> Iterator[str]:
    """function/kubeless/Dockerfile with the session's model baked in, built once by the harness the micro-benchmark's
    --build uses; removed at the end with --no-prune, so the dependency layers (TensorFlow) stay as build cache."""
    from analysis.bench.micro_harness import build_image, docker

    context_model = ROOT / FUNCTION_CONTEXT_MODEL
    shutil.rmtree(context_model, ignore_errors=True)
    shutil.copytree(trained_model_dir, context_model)
    tag = f"kde-test-function:{uuid.uuid4().hex[:8]}"
    try:
        build_image("function/kubeless/Dockerfile", tag, base_image, model_dir=FUNCTION_CONTEXT_MODEL)
        yield tag
    finally:
        docker("rmi", "--no-prune", tag, check=False)
        shutil.rmtree(context_model, ignore_errors=True)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> Path:
    """Every template of the paper roles, rendered once per session by real Ansible with the paper inventory's
    variables (tests/paper/render.yml); test_paper_profile.py and test_paper_findings.py both read it."""
    from tests.test_paper_profile import FIXTURES, ansible_playbook, recap

    out = tmp_path_factory.mktemp("paper-render")
    result = ansible_playbook(str(FIXTURES / "render.yml"), "-e", f"render_dir={out}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert recap(result.stdout)["failed"] == 0
    return out
