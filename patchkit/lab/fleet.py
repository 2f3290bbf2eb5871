"""What each lab host stands for in a fleet (environment, tier, cluster) and the inventory."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from patchkit.lab.config import LabConfig


@dataclass(frozen=True)
class HostProfile:
    """The variables a real inventory would carry for a host, used by policies later."""

    env: str  # dev / staging / prod
    tier: int  # 1 = most critical
    cluster: str  # service the host is a member of
    os_family: str = "Debian"


# The first eight hosts form a small fleet: one dev host, a staging pair, and production with
# a three-member web cluster and a two-member database cluster (anti-affinity has work to do).
_PROFILES: tuple[HostProfile, ...] = (
    HostProfile("dev", 3, "app-dev"),
    HostProfile("staging", 2, "app-staging"),
    HostProfile("prod", 1, "web"),
    HostProfile("prod", 1, "web"),
    HostProfile("prod", 1, "db"),
    HostProfile("prod", 1, "db"),
    HostProfile("prod", 2, "web"),
    HostProfile("staging", 2, "app-staging"),
)


def profile(index: int) -> HostProfile:
    """The profile of host ``index``; past the eighth the pattern repeats."""
    return _PROFILES[(index - 1) % len(_PROFILES)]


def inventory(config: LabConfig, indices: Iterable[int]) -> dict[str, Any]:
    """The lab inventory as Ansible's YAML inventory structure.

    Environments are groups (``dev``, ``staging``, ``prod``) under ``lab``; tier, cluster and
    OS family are host variables, as they usually are in a CMDB-fed inventory.
    """
    by_env: dict[str, dict[str, Any]] = {}
    for index in sorted(set(indices)):
        prof = profile(index)
        by_env.setdefault(prof.env, {})[config.host_name(index)] = {
            "ansible_host": str(config.address(index)),
            "env": prof.env,
            "tier": prof.tier,
            "cluster": prof.cluster,
            "os_family": prof.os_family,
        }
    children = {env: {"hosts": hosts} for env, hosts in sorted(by_env.items())}
    return {
        "all": {
            "children": {
                "lab": {
                    "children": children,
                    "vars": {
                        "ansible_user": "root",
                        "ansible_ssh_private_key_file": str(config.key_path),
                        # the lab knows its hosts' keys: a changed key is refused
                        "ansible_ssh_common_args": (
                            "-o StrictHostKeyChecking=yes"
                            f" -o UserKnownHostsFile={config.known_hosts}"
                        ),
                        "ansible_python_interpreter": "/usr/bin/python3",
                        "patchkit_lab_name": config.name,
                        "patchkit_lab_subnet": str(config.subnet),
                    },
                }
            }
        }
    }
