"""Machines other than this one: what a Ray cluster's nodes are called and how requests name
their devices. Pure logic, no Ray: engine.ray_executor feeds it what the nodes report.

A cluster device is ``NODE/DEVICE`` (``gpu-a/cuda:0``, ``mac-1/mps``). NODE is the
``BENCHBOARD_NODE_NAME`` variable of the node's raylet where it was set for ``ray start``;
otherwise the node's hostname, with a short node-id suffix when hostnames repeat. A name
once given stays with its node for the life of the server, so a run's configs never change
device under it; a node that comes back under the same ``BENCHBOARD_NODE_NAME`` takes its
name back.

A request may name ``cpu``/``cuda`` (this server's own devices), ``NODE/DEVICE``
(``NODE/cuda`` is ``NODE/cuda:0``) or ``*/DEVICE`` (that device, or every device of that
type, on every live node: ``*/cuda`` is every node's CUDA devices).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from importlib import util as import_util

import msgspec

from engine.errors import InvalidRequestError, UnknownHardwareError

NODE_NAME_VARIABLE = "BENCHBOARD_NODE_NAME"
SEPARATOR = "/"
WILDCARD = "*"
SUFFIX_LENGTH = 6
RAY_MISSING = "--ray-address needs Ray, which is not installed: pip install 'benchboard[ray]'"
DEVICE_TYPES = ("cpu", "cuda", "rocm", "mps", "xpu")


def unsupported_ray_address(address: str) -> str | None:
    """Why ``--ray-address`` cannot take ``address``, or None.

    Ray Client (``ray://``) is refused: Ray's docs say it ends the workload, actors included,
    once its connection is lost for more than 30 s, which a server that must outlive its
    cluster's restarts cannot use, and the server reads the node table from the head's GCS
    itself. ``local`` would start a cluster of this process's own, not join one.
    """
    text = address.strip()
    if text.lower().startswith("ray://"):
        return (f"--ray-address {text}: Ray Client (ray://) is not supported, since it ends the server's actors "
                "whenever its connection drops for 30 s; run the server on a node of the cluster (usually the "
                "head) and give it the head's GCS address, HOST:PORT (port 6379 unless ray start --port said "
                "otherwise), or auto")
    if "://" in text:
        return f"--ray-address {text}: expected the head's GCS address, HOST:PORT, or auto"
    if text.lower() == "local":
        return "--ray-address local would start a Ray cluster of its own: give the head's HOST:PORT, or auto"
    return None


def ray_installed() -> bool:
    """Whether the [ray] extra is installed, without importing Ray."""
    return import_util.find_spec("ray") is not None


class NodeIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """What a node says about itself, and what Ray says about it."""

    node_id: str  # Ray's hex node id
    hostname: str
    node_name: str | None = None  # BENCHBOARD_NODE_NAME of its raylet, if set
    ip: str | None = None


def clean_name(raw: str) -> str:
    """A node name usable in ``NODE/DEVICE``: lower case, no slashes or blanks."""
    name = re.sub(r"[\s/]+", "-", raw.strip().lower()).strip("-")
    return name or "node"


def assign_names(nodes: Iterable[NodeIdentity], taken: dict[str, str] | None = None) -> dict[str, str]:
    """node id -> node name for ``nodes``, keeping every name already in ``taken`` (node id -> name).

    A node with ``BENCHBOARD_NODE_NAME`` is called that. Others are called by their
    hostname; where several nodes share a hostname, each gets ``-`` and the first
    characters of its node id. A new node whose name is already held by another node
    (a second ``gpu-a``) is suffixed too, unless ``taken`` gave it to a node no longer
    listed.
    """
    nodes = list(nodes)
    names = dict(taken or {})
    listed = {node.node_id for node in nodes}
    hostnames = [clean_name(node.hostname) for node in nodes if not node.node_name]
    repeated = {host for host in hostnames if hostnames.count(host) > 1}
    # Named nodes first, so that a chosen name wins over a hostname that happens to match it.
    for node in sorted(nodes, key=lambda n: (n.node_name is None, n.node_id)):
        if node.node_id in names:
            continue
        if node.node_name:
            base, suffixed = clean_name(node.node_name), False
        else:
            base = clean_name(node.hostname)
            suffixed = base in repeated
        name = f"{base}-{node.node_id[:SUFFIX_LENGTH]}" if suffixed else base
        holders = {holder for holder, held in names.items() if held == name and holder in listed}
        if holders:
            name = f"{base}-{node.node_id[:SUFFIX_LENGTH]}"
        names[node.node_id] = name
    return names


def split(name: str) -> tuple[str, str] | None:
    """(node, device) of a ``NODE/DEVICE`` name; None for this server's own device names."""
    node, separator, device = name.partition(SEPARATOR)
    return (node, device) if separator else None


def canonical_device(device: str) -> str:
    """``cuda`` is ``cuda:0`` and ``xpu`` is ``xpu:0``, as on this machine."""
    return f"{device}:0" if device in ("cuda", "xpu") else device


class ClusterDevice(msgspec.Struct, frozen=True, kw_only=True):
    """A device of a node as the cluster lists it: ``name`` is ``NODE/DEVICE``."""

    name: str
    node: str
    device: str  # the node's own name for it: what its worker is asked to measure on
    type: str
    alive: bool = True


def resolve(
    names: list[str],
    *,
    local: Callable[[list[str]], list[str]],
    local_names: list[str],
    cluster: list[ClusterDevice],
) -> list[str]:
    """Canonical device names for a request's ``hardware``, deduplicated in order.

    ``local`` resolves this server's own names (engine.hardware.resolve_hardware), which
    are ``local_names``; ``cluster`` is every node's devices. A name that matches nothing raises
    UnknownHardwareError with what exists; a device of a node that is gone raises
    InvalidRequestError saying so.
    """
    by_name = {device.name: device for device in cluster}
    available = [*local_names, *(device.name for device in cluster if device.alive)]
    resolved: list[str] = []

    def add(name: str) -> None:
        if name not in resolved:
            resolved.append(name)

    for raw in names:
        text = str(raw).strip().lower()
        parts = split(text)
        if parts is None:
            try:
                own = local([raw])
            except UnknownHardwareError:
                raise UnknownHardwareError(raw, available) from None
            for name in own:
                add(name)
            continue
        node, device = parts
        if node == WILDCARD:
            matches = [
                d for d in cluster
                if d.alive and (d.device == canonical_device(device) or (device in DEVICE_TYPES and d.type == device))
            ]
            if not matches:
                raise UnknownHardwareError(raw, available)
            for match in matches:
                add(match.name)
            continue
        found = by_name.get(f"{node}{SEPARATOR}{canonical_device(device)}")
        if found is None:
            raise UnknownHardwareError(raw, available)
        if not found.alive:
            raise InvalidRequestError("hardware", f"{raw!r} is on node {found.node}, which has left the cluster")
        add(found.name)
    return resolved



class StampedWorker:
    """A worker whose results say where they were measured: this server's own devices record
    their host (and no node); engine.ray_executor's workers stamp their node's."""

    def __init__(self, worker, *, node: str | None, host: str | None):
        self._worker = worker
        self._node = node
        self._host = host

    def run(self, job, timeout_s: float | None = None):
        result = self._worker.run(job, timeout_s)
        result.node, result.host = self._node, self._host
        return result

    def __getattr__(self, name: str):  # cancel, ping, close, free_memory_bytes, pid, device
        return getattr(self._worker, name)
