"""A local Ray cluster of several nodes for tests (cluster/local_cluster.py), and what
runs where on it: processes by node (their session), actors and shard statuses (by a
probe in a process of its own, tests/support/ray_probe.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cluster.local_cluster import CLIENT_ENV, LocalCluster, NodeSpec, default_nodes

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_cluster(directory: Path, nodes: list[NodeSpec] | None = None) -> Iterator[LocalCluster]:
    """A head and two worker nodes (default_nodes), always ended by their sessions."""
    cluster = LocalCluster(directory)
    try:
        cluster.up(nodes or default_nodes(2))
        yield cluster
    finally:
        cluster.down()


def pids_by_node(cluster: LocalCluster, title: bytes) -> dict[str, list[int]]:
    """Per node, the pids of its processes whose title starts with `title` (Ray titles an
    actor's process `ray::<Class>`)."""
    found: dict[str, list[int]] = {}
    for node in cluster.nodes:
        pids = []
        for pid, _ in cluster.processes(node.spec.name):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(title):
                pids.append(pid)
        found[node.spec.name] = pids
    return found


def node_of(cluster: LocalCluster, pid: int) -> str | None:
    """The node whose session holds `pid`."""
    for node in cluster.nodes:
        if any(p == pid for p, _ in cluster.processes(node.spec.name)):
            return node.spec.name
    return None


def probe(cluster: LocalCluster, timeout_s: float = 120) -> dict[str, Any]:
    """The cluster's live actors (each with the node it runs on) and the shards' statuses."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.ray_probe", cluster.address],
        cwd=ROOT,
        env={**os.environ, **CLIENT_ENV},
        capture_output=True,
        timeout=timeout_s,
        check=True,
    )
    data: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    for actor in data["actors"]:
        actor["node"] = node_of(cluster, actor["pid"])
    return data
