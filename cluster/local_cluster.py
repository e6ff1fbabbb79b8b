"""A Ray cluster of several nodes on this one machine: `python -m cluster local-cluster`.

For the multi-node tests and for trying placement by hand (docs/scaling.md): a head and
N worker nodes, each started by `ray start` (without --block) with its own CPU count,
custom resources, labels and ports, sharing one temp dir of the cluster's own (never
/tmp/ray, whose `session_latest` other Ray instances on the machine read). The service
then joins it with `WA_RAY_ADDRESS` (printed by `up`).

Every node is started in a session of its own (`start_new_session`): `ray start` exits
once the node is up, and its GCS, raylet, agents and workers stay in that session, whose
id (the pid `ray start` had) the kernel never hands out again while a member lives. The
state file records each node's session id; `down` and `kill-raylet` act on the
processes of those sessions alone. `ray stop` is never used: it ends every Ray process
of the machine by name, another test's cluster included.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cluster import process_tree

STATE_FILE = "cluster.json"
CLIENT_ENV = {
    # Ray 2.60 turns token authentication on by itself only for a head `ray start` and a
    # `ray.init()` that starts or finds a local cluster; worker nodes and drivers given an
    # explicit address must ask for it. The token is ~/.ray/auth_token (or RAY_AUTH_TOKEN).
    "RAY_AUTH_MODE": "token",
}
"""What a process joining the cluster (the service's driver, a probe) needs in its env."""
RAY_NODE_ENV = {
    **CLIENT_ENV,
    # Serve's flags are read when each node's processes start (cluster/runner.py).
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    "RAY_USAGE_STATS_ENABLED": "0",
    # A dead node noticed in ~3 s instead of Ray's default ~15 s (5 failed checks 3 s
    # apart): its actors are restarted elsewhere that much sooner. Read by the GCS.
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    # Replicas report their in-flight requests to Serve's autoscaler every second instead
    # of every 10 s: a scale-up or -down is seen within a test's few seconds of load.
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node: its name (in the state file), CPUs, custom resources and labels."""

    name: str
    num_cpus: int
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def default_nodes(workers: int = 2) -> list[NodeSpec]:
    """A head (1 CPU, Serve's controller and HAProxy) and `workers` worker nodes with 1
    CPU, room for 8 shards (`wa_shard`) and 2 media workers (`wa_media`) each, labelled
    `wa-role=worker` (and `wa-node=<name>` on every node). The CPU counts are nominal:
    every actor of the service asks for 0."""
    head = NodeSpec("head", 1, {"wa_head": 1.0}, {"wa-role": "head", "wa-node": "head"})
    return [
        head,
        *(
            NodeSpec(
                f"worker{i}",
                1,
                {"wa_shard": 8.0, "wa_media": 2.0},
                {"wa-role": "worker", "wa-node": f"worker{i}"},
            )
            for i in range(1, workers + 1)
        ),
    ]


@dataclass(slots=True)
class NodeState:
    """A started node: its spec, the session its processes live in, its ports."""

    spec: NodeSpec
    session: int
    ports: dict[str, int]


@dataclass(slots=True)
class LocalCluster:
    """The cluster under `directory` (its state file, logs and Ray's temp dir)."""

    directory: Path
    nodes: list[NodeState] = field(default_factory=list)
    gcs_port: int = 0

    @property
    def address(self) -> str:
        """What WA_RAY_ADDRESS (ray.init) is given."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def temp_dir(self) -> Path:
        """Ray's temp dir: short, since Ray's unix sockets live below it (107-byte limit)."""
        return Path("/tmp") / f"wa-lc-{self.gcs_port}"  # noqa: S108 -- per-cluster, ours

    def up(self, specs: list[NodeSpec], timeout_s: float = 120) -> None:
        """Start the head, then each worker node; on any failure, end what started."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = _PortPicker()
        self.gcs_port = ports.take()
        try:
            for spec in specs:
                self._start_node(spec, ports, head=not self.nodes, timeout_s=timeout_s)
                self.save()
        except BaseException:
            self.down()
            raise

    def _start_node(self, spec: NodeSpec, ports: _PortPicker, head: bool, timeout_s: float) -> None:
        low = ports.worker_range()
        node_ports = {
            "node_manager": ports.take(),
            "object_manager": ports.take(),
            "dashboard_agent_listen": ports.take(),
            "dashboard_agent_grpc": ports.take(),
            "runtime_env_agent": ports.take(),
            "metrics_export": ports.take(),
            "min_worker": low,
            "max_worker": low + _WORKER_PORTS - 1,
        }
        args = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={spec.num_cpus}",
            f"--resources={json.dumps(spec.resources)}",
            f"--temp-dir={self.temp_dir}",
            # Objects here are small (configs, statuses): Ray's default (30 % of RAM per
            # node) would reserve 3 x 7 GiB of /dev/shm on this machine.
            f"--object-store-memory={100 * 1024 * 1024}",
            f"--node-manager-port={node_ports['node_manager']}",
            f"--object-manager-port={node_ports['object_manager']}",
            f"--dashboard-agent-listen-port={node_ports['dashboard_agent_listen']}",
            f"--dashboard-agent-grpc-port={node_ports['dashboard_agent_grpc']}",
            f"--runtime-env-agent-port={node_ports['runtime_env_agent']}",
            f"--metrics-export-port={node_ports['metrics_export']}",
            f"--min-worker-port={node_ports['min_worker']}",
            f"--max-worker-port={node_ports['max_worker']}",
            "--disable-usage-stats",
        ]
        if spec.labels:
            args.append("--labels=" + ",".join(f"{k}={v}" for k, v in spec.labels.items()))
        if head:
            node_ports["ray_client"] = ports.take()
            node_ports["dashboard"] = ports.take()
            args += [
                "--head",
                f"--port={self.gcs_port}",
                f"--ray-client-server-port={node_ports['ray_client']}",
                # The dashboard's head process runs even with the UI off (Ray's state and
                # job APIs): on a port of its own, never the fixed 8265 `make run` uses.
                "--include-dashboard=false",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={node_ports['dashboard']}",
            ]
        else:
            args.append(f"--address={self.address}")
        log = self.directory / f"{spec.name}.start.log"
        with log.open("ab") as out:
            starter = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **RAY_NODE_ENV, MARKER: str(self.temp_dir)},
                start_new_session=True,
            )
            # Recorded before the wait: a start that hangs or fails is still ended by down().
            self.nodes.append(NodeState(spec, starter.pid, node_ports))
            self.save()
            try:
                code = starter.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                starter.kill()
                raise RuntimeError(f"ray start of {spec.name} took over {timeout_s}s") from None
        if code != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"ray start of {spec.name} exited {code}:\n{tail}")

    def node(self, name: str) -> NodeState:
        """The node called `name`."""
        for node in self.nodes:
            if node.spec.name == name:
                return node
        raise KeyError(f"no node {name!r} in {self.directory / STATE_FILE}")

    def processes(self, name: str) -> list[process_tree.Proc]:
        """The live processes of node `name` (its session's members)."""
        return _session_members(self.node(name).session, str(self.temp_dir))

    def raylet_pid(self, name: str) -> int | None:
        """The pid of node `name`'s raylet, found among its session's processes."""
        for pid, _ in self.processes(name):
            with contextlib.suppress(psutil.Error):
                if Path(psutil.Process(pid).exe()).name == "raylet":
                    return pid
        return None

    def kill_raylet(self, name: str) -> int:
        """kill -9 node `name`'s raylet (its workers and agents then exit on their own, the
        GCS marks the node dead and Ray restarts its actors elsewhere); returns the pid."""
        pid = self.raylet_pid(name)
        if pid is None:
            raise RuntimeError(f"node {name} has no raylet running")
        os.kill(pid, 9)
        return pid

    def down(self, grace_s: float = 5.0) -> int:
        """End every process of every node (workers first, then the head): SIGTERM, SIGKILL
        after `grace_s`. Returns how many were ended; the state file is removed."""
        ended = 0
        for node in reversed(self.nodes):
            ended += process_tree.end(
                _session_members(node.session, str(self.temp_dir)), grace_s=grace_s
            )
        (self.directory / STATE_FILE).unlink(missing_ok=True)
        if self.gcs_port:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.nodes = []
        return ended

    def save(self) -> None:
        """Write the state file (atomically)."""
        data = {
            "gcs_port": self.gcs_port,
            "nodes": [
                {"spec": asdict(n.spec), "session": n.session, "ports": n.ports} for n in self.nodes
            ],
        }
        path = self.directory / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, directory: Path) -> LocalCluster:
        """The cluster recorded under `directory` (no nodes if there is no state file)."""
        try:
            data: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
        except (OSError, ValueError):
            return cls(directory)
        nodes = [
            NodeState(NodeSpec(**n["spec"]), int(n["session"]), dict(n["ports"]))
            for n in data["nodes"]
        ]
        return cls(directory, nodes, int(data["gcs_port"]))

    def describe(self) -> list[dict[str, Any]]:
        """Per node: name, resources, labels, live processes and the raylet's pid."""
        return [
            {
                "node": n.spec.name,
                "cpus": n.spec.num_cpus,
                "resources": n.spec.resources,
                "labels": n.spec.labels,
                "processes": len(_session_members(n.session, str(self.temp_dir))),
                "raylet": self.raylet_pid(n.spec.name),
            }
            for n in self.nodes
        ]


MARKER = "WA_LOCAL_CLUSTER"  # in every node's environment: the cluster's temp dir


def _session_members(session: int, marker: str) -> list[process_tree.Proc]:
    """Live processes whose session id is `session` and whose environment carries this
    cluster's marker (pid plus start time). The marker: once a node's processes are all
    gone, the kernel may give its session id to any new session (another Ray, a shell),
    which a stale state file must never end."""
    members: list[process_tree.Proc] = []
    wanted = f"{MARKER}={marker}".encode()
    for pid in psutil.pids():
        try:
            if os.getsid(pid) != session:
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if wanted not in environ:
            continue
        started = process_tree.start_ticks(pid)  # None: gone meanwhile, or a zombie
        if started is not None:
            members.append((pid, started))
    return members


_WORKER_PORTS = 200


class _PortPicker:
    """Free ports for a cluster: single ports from 20000-29999 (below Serve's replica
    ports, 30000-31000) and a worker-port block per node from Ray's 10002-19999."""

    def __init__(self) -> None:
        self._rng = random.SystemRandom()
        self._taken: set[int] = set()

    def take(self) -> int:
        for _ in range(500):
            port = self._rng.randrange(20000, 30000)
            if port not in self._taken and _free(port):
                self._taken.add(port)
                return port
        raise RuntimeError("no free port in 20000-29999")

    def worker_range(self) -> int:
        for _ in range(200):
            low = self._rng.randrange(10002, 20000 - _WORKER_PORTS, _WORKER_PORTS)
            block = range(low, low + _WORKER_PORTS)
            if not self._taken.intersection(block) and all(_free(p) for p in block[:5]):
                self._taken.update(block)
                return low
        raise RuntimeError("no free worker-port block in 10002-19999")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_nodes(cluster: LocalCluster, count: int, timeout_s: float = 60) -> None:
    """Wait until every node's raylet runs (after `up`, before a driver joins)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(1 for n in cluster.nodes if cluster.raylet_pid(n.spec.name)) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"fewer than {count} raylets after {timeout_s}s: {cluster.describe()}")


def local_cluster_command(action: str, directory: Path, workers: int, node: str | None) -> int:
    """`python -m cluster local-cluster up|down|status|kill-raylet`."""
    cluster = LocalCluster.load(directory)
    if action == "up":
        if cluster.nodes:
            print(f"already up: {cluster.address} (local-cluster down first)", file=sys.stderr)
            return 1
        cluster.up(default_nodes(workers))
        print(json.dumps(cluster.describe(), indent=2))
        print(f"RAY_AUTH_MODE=token WA_RAY_ADDRESS={cluster.address} WA_PROXY_LOCATION=HeadOnly")
        return 0
    if action == "down":
        print(f"ended {cluster.down()} processes")
        return 0
    if action == "kill-raylet":
        if node is None:
            print("kill-raylet needs --node NAME", file=sys.stderr)
            return 2
        print(f"killed raylet {cluster.kill_raylet(node)} of {node}")
        return 0
    print(json.dumps({"address": cluster.address, "nodes": cluster.describe()}, indent=2))
    return 0


def add_commands(sub: Any) -> None:
    """`local-cluster` on the CLI's subparsers (cluster/__main__.py)."""
    local = sub.add_parser("local-cluster", help="a Ray cluster of several nodes on this machine")
    local.add_argument("action", choices=["up", "down", "status", "kill-raylet"])
    local.add_argument("--dir", default="var/local-cluster", help="state file, logs")
    local.add_argument("--workers", type=int, default=2, help="worker nodes beside the head")
    local.add_argument("--node", default=None, help="kill-raylet: the node's name (worker1)")
