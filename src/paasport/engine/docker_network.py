"""Where tasks on Docker's default bridge reach this host: the bridge network's gateway address
and subnet. ``platform.addons`` asks it for the one-host Postgres add-on server, which listens
there (and lets that subnet in) so tasks connect to it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from paasport.engine.docker import DockerEngine, translated
from paasport.errors import EngineError

BRIDGE = "bridge"


@dataclass(frozen=True)
class BridgeNetwork:
    gateway: str  # e.g. 172.17.0.1
    subnet: str  # e.g. 172.17.0.0/16


def bridge_of(inspected: dict[str, Any]) -> BridgeNetwork | None:
    """The first IPv4 gateway and subnet of a ``network inspect`` answer. Pure.

    A daemon that found its bridge interface already configured (a second dockerd on the same
    host, a restart) may leave ``Gateway`` out: then it is the subnet's first address, which is
    what Docker gives the bridge."""
    for entry in (inspected.get("IPAM") or {}).get("Config") or ():
        gateway, subnet = entry.get("Gateway"), entry.get("Subnet")
        if not subnet or ":" in str(subnet):
            continue
        if not gateway:
            try:
                gateway = str(next(ipaddress.ip_network(str(subnet), strict=False).hosts()))
            except (ValueError, StopIteration):
                continue
        return BridgeNetwork(str(gateway).split("/")[0], str(subnet))
    return None


def bridge_network(engine: DockerEngine) -> BridgeNetwork:
    """The default bridge of ``engine``'s daemon; an EngineError when it has none."""
    with translated(f"cluster {engine.cluster}: reading the {BRIDGE} network", engine.where):
        inspected = engine.api.inspect_network(BRIDGE)
    found = bridge_of(inspected)
    if found is None:
        raise EngineError(
            f"cluster {engine.cluster}: Docker's {BRIDGE} network has no IPv4 gateway"
        )
    return found
