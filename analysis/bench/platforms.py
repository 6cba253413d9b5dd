"""Platform kinds as plug-ins: what the benchmark needs to know about each kind of serving platform.

A *platform* is one entry of the run's configuration (a name the results use, such as ``function``); its *kind*
says what serves it (``kubeless``, ``container``, ...) and its *role* whether it is a serverless platform under
test (``function``) or the plain container every function platform is compared with (``baseline``). A platform
may also be reached *via* another one (the Kubeless function through its ingress): it then serves the same
function, one hop further out, and the report shows that hop's own cost.

Each kind is one module under ``analysis/bench/kinds/`` that calls :func:`register` with a :class:`Kind`; the
registry imports every module of that package, so a new kind is a new file there (docs/adding-a-platform.md). A
run may also name extra modules in its configuration (``"kinds": ["my_package.my_kind"]``), which is how a
platform kept outside this repository plugs in.

Nothing here names a platform: the steps and the report ask a platform's kind what it supports.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

ROLES = ("function", "baseline")


class UnknownKind(ValueError):
    """A configuration names a kind no module registered."""


@dataclass(frozen=True)
class Kind:
    """What one kind of platform serves and supports.

    role: the comparison role its platforms take unless the configuration says otherwise.
    server_time_metric: the Prometheus histogram (seconds) its /metrics reports per request, if any.
    body_limit_check: the 1 MiB body check applies (the paper's ingress limit: it matters for functions).
    warmup_env: the environment variable whose value 0 turns off its warm-up predictions (the nowarmup step runs a
        copy of its container with it), or None.
    upstream: the upstream project and version whose behaviour its runtime follows.
    error_origins: reads the text its container printed during one run (server.log) and returns the failed POST
        replies by the component that reported them: ``function`` for the user code's own non-2xx answers, any other
        name (``gateway``, ``watchdog``, ``router``, ...) for a reply the platform made itself. None: the platform's
        log does not say (analysis/bench/layers.py then reads the Kubeless runtime's access lines, if any).
    """

    name: str
    role: str
    label: str
    server_time_metric: str | None = None
    body_limit_check: bool = False
    warmup_env: str | None = None
    upstream: str = ""
    error_origins: Callable[[str], Counter[str]] | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"kind {self.name!r}: role must be one of {', '.join(ROLES)}, got {self.role!r}")


_REGISTRY: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add a kind; registering the same name twice with different settings is an error."""
    known = _REGISTRY.get(kind.name)
    if known is not None and known != kind:
        raise ValueError(f"kind {kind.name!r} is registered twice with different settings")
    _REGISTRY[kind.name] = kind
    return kind


@functools.cache
def _load_builtins() -> None:
    from analysis.bench import kinds

    for module in pkgutil.iter_modules(kinds.__path__):
        importlib.import_module(f"{kinds.__name__}.{module.name}")


def load_modules(names: list[str] | tuple[str, ...]) -> None:
    """Import extra kind modules a configuration names; an import error names the module."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UnknownKind(f"kind module {name!r} cannot be imported: {exc}") from None


def known() -> dict[str, Kind]:
    _load_builtins()
    return dict(_REGISTRY)


def get(name: str) -> Kind:
    kinds = known()
    try:
        return kinds[name]
    except KeyError:
        raise UnknownKind(f"unknown platform kind {name!r}; known kinds: {', '.join(sorted(kinds))} "
                          "(a new kind is a module under analysis/bench/kinds/, see docs/adding-a-platform.md)"
                          ) from None
