"""One role per platform kind (roles/kind_<kind>), driven by the inventory's `platforms:` list: every platform of
the local inventory has its kind's role with a deploy and a teardown entry point that take the entry as
`platform`; the deploy and teardown playbooks pick the role from the kind and nothing else; and no role copies
an option definition from `main` into a secondary entry point (they share it through a YAML anchor)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from analysis.bench import platforms as registry

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = yaml.safe_load((ROOT / "inventory" / "local" / "group_vars" / "all.yml").read_text())


def role_of(entry: dict) -> Path:
    name = (entry.get("deploy") or {}).get("role") or "kind_" + entry["kind"].replace("-", "_")
    return ROOT / "roles" / name


def test_every_local_platform_has_its_kind_role_with_deploy_and_teardown():
    entries = INVENTORY["platforms"]
    assert {e["name"] for e in entries} >= {"function", "container", "function_ingress"}
    for entry in entries:
        assert entry["kind"] in registry.known(), entry
        role = role_of(entry)
        assert (role / "tasks" / "main.yml").is_file() and (role / "tasks" / "teardown.yml").is_file(), role
        specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for entry_point in ("main", "teardown"):
            assert specs[entry_point]["options"]["platform"]["required"] is True, (role, entry_point)
        # what the role reads of the entry is in the entry: a key the tasks use under platform.deploy.<key>
        # without a default must be given by the inventory
        tasks = (role / "tasks" / "main.yml").read_text()
        for key in set(re.findall(r"platform\.deploy\.(\w+)\b(?!\s*\|\s*default)", tasks)):
            assert key in entry["deploy"], (entry["name"], key)
        if "via" in entry:
            via = next(e for e in entries if e["name"] == entry["via"])
            assert entries.index(via) < entries.index(entry), "a via platform is deployed before what wraps it"


def test_the_playbooks_choose_the_role_from_the_kind_only():
    for playbook in ("deploy.yml", "teardown.yml"):
        text = (ROOT / "playbooks" / "local" / playbook).read_text()
        assert "'kind_' ~ (platform.kind | replace('-', '_'))" in text, playbook
        assert "loop_var: platform" in text, playbook
        # no platform name or kind is spelled out in the driver
        for name in ("kubeless", "kde-function", "function_ingress", "serving_containers", "local_ingress"):
            assert name not in text, (playbook, name)


def test_secondary_entry_points_share_mains_options_through_anchors():
    copies = []
    for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        specs = yaml.safe_load(path.read_text())["argument_specs"]
        main = specs["main"].get("options") or {}
        text = path.read_text()
        for entry_point, spec in specs.items():
            if entry_point == "main":
                continue
            for option in spec.get("options") or {}:
                if option in main and not re.search(rf"^\s+{option}: \*\S+\s*$", text, re.M):
                    copies.append(f"{path.parent.parent.name}:{entry_point}:{option}")
    assert not copies, copies


def test_one_knob_picks_the_platforms_for_site_and_bench():
    import importlib.util

    from ansible.errors import AnsibleFilterError

    spec = importlib.util.spec_from_file_location("platforms_filter", ROOT / "plugins" / "filter" / "platforms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    select = module.FilterModule().filters()["select_platforms"]
    entries = [{"name": "function"}, {"name": "container"}, {"name": "function_ingress", "via": "function"},
               {"name": "openfaas_http", "optional": True}]

    def names(knob, **kwargs):
        return [p["name"] for p in select(entries, knob, **kwargs)]

    assert names("") == names([]) == ["function", "container", "function_ingress"]  # the default run
    assert names("all") == ["function", "container", "function_ingress", "openfaas_http"]
    assert names(" container , openfaas_http") == ["container", "openfaas_http"]  # list order, not the knob's
    assert names("function_ingress") == ["function_ingress"]
    assert names("function_ingress", with_via=True) == ["function", "function_ingress"]  # deploy needs its via
    try:
        select(entries, "container,nope")
    except AnsibleFilterError as exc:
        assert "nope" in str(exc) and "function_ingress" in str(exc)
    else:
        raise AssertionError("an unknown name must stop the play")


def test_a_bounded_platform_runs_only_its_levels_and_requests():
    """OpenFaaS classic loads the model per request: its entry bounds the matrix, the others keep theirs."""
    from analysis.bench.config import ConfigError, config_from_dict, make_plan

    config = {"profile": "local", "config": {"concurrency": [1, 5, 10, 20], "repetitions": 2,
                                             "overload_concurrency": [5, 40]},
              "platforms": {"container": {"kind": "container", "url": "http://127.0.0.1:2/predict"},
                            "classic": {"kind": "kubeless", "url": "http://127.0.0.1:3/", "max_concurrency": 5,
                                        "requests_per_run": 12}}}
    plan = make_plan(config_from_dict(config), "/r")

    def steps(platform, step):
        return [i for i in plan if i.platform == platform and i.step == step]

    assert sorted({i.concurrency for i in steps("classic", "concurrency")}) == [1, 5]
    assert sorted({i.concurrency for i in steps("container", "concurrency")}) == [1, 5, 10, 20]
    assert {i.requests for i in steps("classic", "concurrency")} == {12}
    assert {i.requests for i in steps("container", "concurrency")} == {140}  # the knob's default
    assert [(i.concurrency, i.requests) for i in steps("classic", "warmup")] == [(5, 12)]
    assert [i.concurrency for i in steps("classic", "overload")] == [5]
    assert steps("classic", "rate") == [] and steps("container", "rate") != []
    for bad in ({"max_concurrency": 0}, {"requests_per_run": "ten"}, {"max_concurrency": 5, "requests_per_run": 2}):
        broken = {**config, "platforms": {**config["platforms"], "classic": {**config["platforms"]["classic"], **bad}}}
        try:
            config_from_dict(broken)
        except ConfigError as exc:
            assert "platforms.classic" in str(exc)
        else:
            raise AssertionError(f"{bad} must be refused")


def test_the_readiness_url_reaches_the_bench_configuration():
    """An entry's ready_url (OpenWhisk's /ping, Fission's /router-healthz) is what the nowarmup step's copy is awaited
    on, so the bench role's template passes it through; a malformed one is refused with its key."""
    from analysis.bench.config import ConfigError, config_from_dict
    from analysis.bench.nowarmup import _path

    template = (ROOT / "roles" / "bench" / "templates" / "bench-config.json.j2").read_text()
    rejected = re.search(r"rejectattr\('key', 'in', \[([^\]]*)\]\)", template).group(1)
    assert "ready_url" not in rejected and "deploy" in rejected
    config = {"profile": "local", "config": {},
              "platforms": {"container": {"kind": "container", "url": "http://127.0.0.1:2/predict"},
                            "ow": {"kind": "kubeless", "url": "http://127.0.0.1:3/api/v1/web/guest/default/predict",
                                   "ready_url": "http://127.0.0.1:3/ping"}}}
    platforms = config_from_dict(config).platforms
    assert platforms["ow"].ready_url == "http://127.0.0.1:3/ping" and platforms["container"].ready_url is None
    assert _path(platforms["ow"].ready_url) == "/ping"
    assert _path(platforms["ow"].url) == "/api/v1/web/guest/default/predict"
    assert _path("http://127.0.0.1:4") == "/" and _path("http://h:1/p?x=1") == "/p?x=1"
    config["platforms"]["ow"]["ready_url"] = "ping"
    try:
        config_from_dict(config)
    except ConfigError as exc:
        assert "platforms.ow.ready_url" in str(exc)
    else:
        raise AssertionError("a ready_url without a scheme must be refused")
