"""The kind of each platform name the tests use, as inventory/local gives them (analysis/bench/kinds/)."""

from __future__ import annotations

KIND_OF = {"function": "kubeless", "container": "container", "function_ingress": "ingress-nginx"}


def with_kinds(platforms: dict[str, dict]) -> dict[str, dict]:
    """`platforms` with each entry's kind filled in from its name where the test did not set one."""
    return {name: {"kind": KIND_OF[name], **settings} for name, settings in platforms.items()}
