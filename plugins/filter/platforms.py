"""Which entries of the inventory's `platforms:` list a run takes: the one knob `bench_platforms`, read the same way
by site.yml (playbooks/local/deploy.yml) and bench.yml (roles/bench)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def _names(knob) -> list[str]:
    if knob is None:
        return []
    items = knob.split(",") if isinstance(knob, str) else list(knob)
    return [str(item).strip() for item in items if str(item).strip()]


def select_platforms(platforms, knob="", with_via=False):
    """The entries the knob picks, in the list's order.

    "" (or an empty list): every entry that is not `optional: true` (the default run); "all": every entry;
    otherwise the named ones. with_via adds the platforms a picked one is reached through (deploy needs them).
    """
    platforms = list(platforms or [])
    names = _names(knob)
    known = [p["name"] for p in platforms]
    if names == ["all"]:
        return platforms
    if not names:
        return [p for p in platforms if not p.get("optional", False)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise AnsibleFilterError(f"bench_platforms names {', '.join(unknown)}, which the inventory's platforms list "
                                 f"does not have; it has {', '.join(known)} (or say all)")
    wanted = set(names)
    if with_via:
        wanted |= {p["via"] for p in platforms if p["name"] in names and p.get("via")}
    return [p for p in platforms if p["name"] in wanted]


class FilterModule:
    def filters(self):
        return {"select_platforms": select_platforms}
