"""What cannot run here (Serverless + Kubeless) is checked statically: serverless.yml and requirements.txt."""

from __future__ import annotations

import ast
import re

import yaml

from tests.fixtures_function import FUNCTION_DIR, REPO_ROOT


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_serverless_yml_deploys_the_handler_with_the_runtime_image():
    config = yaml.safe_load((FUNCTION_DIR / "serverless.yml").read_text())
    assert config["provider"]["name"] == "kubeless"
    assert config["provider"]["runtime"] == "python3.6"  # a runtime alpha.8's kubeless-config knows
    assert config["plugins"] == ["serverless-kubeless"]
    function = config["functions"]["predict"]
    module, func = function["handler"].split(".")
    assert module == "handler"
    assert (FUNCTION_DIR / f"{module}.py").is_file()
    tree = ast.parse((FUNCTION_DIR / f"{module}.py").read_text())
    assert func in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "kubeless-dl-eval/function" in function["image"]
    assert function["events"] == [{"http": {"path": "/predict"}}]
    # the package stays far below Kubeless's 1 MiB: the model is in the image, not in the zip
    assert set(config["package"]["include"]) == {"handler.py", "requirements.txt"}
    assert config["package"]["exclude"] == ["**"]


def test_function_requirements_match_the_serving_pins():
    function_pins = pins(FUNCTION_DIR / "requirements.txt")
    serving_pins = pins(REPO_ROOT / "requirements" / "serving.txt")
    assert function_pins
    for name, version in function_pins.items():
        assert serving_pins.get(name) == version, f"{name}: function {version}, serving {serving_pins.get(name)}"


def test_the_dockerfile_shares_the_dependency_stages_with_the_container_image():
    def preamble(path):
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
        end = next(i for i, line in enumerate(lines) if line.startswith("ENV PATH=/opt/venv/bin"))
        return lines[: end + 1]

    function_preamble = preamble(FUNCTION_DIR / "Dockerfile")
    assert function_preamble[0] == "ARG BASE_IMAGE=python:3.11-slim"
    assert preamble(REPO_ROOT / "image" / "Dockerfile") == function_preamble
