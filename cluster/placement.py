"""Where the service's Ray actors and replicas run on a cluster of several nodes.

Four roles are placed: the shard actors (one per partition), the media workers, the
ingress replicas and the shard pool (the one replica that owns the shard and media
actors). Each role may ask for custom resources (`ray start --resources '{"wa_shard": 8}'`
on the nodes meant for it, `WA_SHARD_RESOURCES=wa_shard=1`: a node then hosts at most 8
shards) or for node labels (`ray start --labels wa-role=shard`,
`WA_SHARD_LABELS=wa-role=shard`). `WA_PLACEMENT=spread` adds Ray's SPREAD scheduling
strategy to the shard and media actors, so they are spread over the nodes that fit
instead of packed onto the node that creates them (the shard pool's). Nothing set (the
default): Ray's default scheduling, as on one node. docs/scaling.md says when to use which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Strategy = Literal["default", "spread"]


class RolePlacement(BaseModel):
    """One role's custom resources (per actor) and node label selector."""

    model_config = ConfigDict(frozen=True)

    resources: dict[str, float] = {}
    labels: dict[str, str] = {}

    def ray_options(self) -> dict[str, Any]:
        """The Ray actor options these add (none when nothing is set)."""
        options: dict[str, Any] = {}
        if self.resources:
            options["resources"] = dict(self.resources)
        if self.labels:
            options["label_selector"] = dict(self.labels)
        return options


class Placement(BaseModel):
    """Every role's placement (cluster/settings.py builds it from WA_* settings)."""

    model_config = ConfigDict(frozen=True)

    strategy: Strategy = "default"
    shard: RolePlacement = RolePlacement()
    media: RolePlacement = RolePlacement()
    ingress: RolePlacement = RolePlacement()
    pool: RolePlacement = RolePlacement()
    ingress_max_per_node: int = 0  # 0: no limit

    def shard_options(self) -> dict[str, Any]:
        """Options added to every ShardActor's (its name and restarts are its own)."""
        return self._actor_options(self.shard)

    def media_options(self) -> dict[str, Any]:
        """Options added to every MediaWorker's."""
        return self._actor_options(self.media)

    def _actor_options(self, role: RolePlacement) -> dict[str, Any]:
        options = role.ray_options()
        if self.strategy == "spread":
            # Why SPREAD and not a placement group: a shard is restarted alone (Ray
            # restarts a dead actor on any node that fits), and a placement group's
            # bundles would pin the restart to the dead node's reserved slot.
            options["scheduling_strategy"] = "SPREAD"
        return options

    def pool_actor_options(self) -> dict[str, Any]:
        """The shard pool replica's ray_actor_options. The shard and media actors are
        the pool's (Ray ends an actor with its owner): the node the pool runs on takes
        every shard down with it when it dies, so pin it to a node that lives as long as
        the cluster (the head's label), docs/scaling.md."""
        return {"num_cpus": 0, **self.pool.ray_options()}

    def ingress_actor_options(self) -> dict[str, Any]:
        """The ingress replicas' ray_actor_options: zero CPUs (never pending on a small
        node) plus the role's resources and labels (Serve allows no strategy here: its
        own replica scheduler spreads replicas over nodes)."""
        return {"num_cpus": 0, **self.ingress.ray_options()}


class IngressScaling(BaseModel):
    """The ingress deployment's replica count or Serve's autoscaling config."""

    model_config = ConfigDict(frozen=True)

    replicas: int = 1  # the fixed count, or the autoscaler's minimum
    max_replicas: int = 0  # 0: no autoscaling
    target_ongoing: float = 12.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_s: float = 30.0

    def deployment_options(self) -> dict[str, Any]:
        """`num_replicas` or `autoscaling_config` for the ingress deployment's options."""
        if not self.max_replicas:
            return {"num_replicas": self.replicas}
        return {
            "autoscaling_config": {
                "min_replicas": self.replicas,
                "initial_replicas": self.replicas,
                "max_replicas": self.max_replicas,
                # Serve's autoscaler compares the requests in flight per replica (queued
                # in the replica plus executing) with this target, averaged over
                # look_back_period_s: docs/scaling.md has the measurement behind it.
                "target_ongoing_requests": self.target_ongoing,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
                "look_back_period_s": self.look_back_s,
                # Serve wants its (deprecated) interval below the window; 10 s by default.
                "metrics_interval_s": min(10.0, self.look_back_s / 2),
            }
        }


def parse_resources(variable: str, text: str) -> dict[str, float]:
    """`name=amount,name=amount` (amounts > 0) into a resource dict; empty for ''."""
    resources: dict[str, float] = {}
    for name, value in _pairs(variable, text):
        try:
            amount = float(value)
        except ValueError:
            raise ValueError(f"{variable}: {name}={value!r} is not a number") from None
        if not amount > 0 or name in {"CPU", "GPU", "memory", "object_store_memory"}:
            raise ValueError(f"{variable}: {name} must be a custom resource with an amount > 0")
        resources[name] = amount
    return resources


def parse_labels(variable: str, text: str) -> dict[str, str]:
    """`key=value,key=value` into a label selector (Ray's syntax for the values: `!v`,
    `in(a,b)` are not supported here: one value per key); empty for ''."""
    return dict(_pairs(variable, text))


def _pairs(variable: str, text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ValueError(f"{variable}: {part!r} is not name=value")
        pairs.append((name, value))
    return pairs


def _capacity(role: RolePlacement, node: Mapping[str, Any]) -> float:
    """How many actors of the role a live node can host (inf: no resources asked), 0
    when its labels do not match."""
    labels = node.get("Labels") or {}
    if any(labels.get(key) != value for key, value in role.labels.items()):
        return 0
    have = node.get("Resources") or {}
    return min(
        (
            math.floor(have.get(name, 0.0) / amount + 1e-9)
            for name, amount in role.resources.items()
        ),
        default=math.inf,
    )


def unplaceable(
    placement: Placement,
    nodes: Sequence[Mapping[str, Any]],
    *,
    shards: int,
    media_workers: int,
    ingress_replicas: int,
) -> list[str]:
    """Why a role cannot be placed on the cluster's live nodes (`ray.nodes()` entries):
    an actor no node fits would wait for one for ever (Serve waits for the pool, whose
    constructor waits for its shards) with no error, leaving its partitions unread. One
    message per role short of room, naming its settings; [] when every role fits."""
    alive = [n for n in nodes if n.get("Alive")]
    roles = (
        ("WA_SHARD_RESOURCES / WA_SHARD_LABELS", placement.shard, shards, "shard actors"),
        ("WA_MEDIA_RESOURCES / WA_MEDIA_LABELS", placement.media, media_workers, "media workers"),
        ("WA_POOL_RESOURCES / WA_POOL_LABELS", placement.pool, 1, "the shard pool"),
    )
    problems = []
    for variables, role, needed, what in roles:
        if needed and (role.resources or role.labels):
            room = sum(_capacity(role, n) for n in alive)
            if room < needed:
                problems.append(
                    f"{variables}: room for {room:g} of {needed} {what} on the "
                    f"{len(alive)} live node(s) (their resources and labels: docs/scaling.md)"
                )
    ingress = placement.ingress
    per_node = placement.ingress_max_per_node or math.inf
    room = sum(min(_capacity(ingress, n), per_node) for n in alive)
    if room < ingress_replicas:
        problems.append(
            "WA_INGRESS_RESOURCES / WA_INGRESS_LABELS / WA_INGRESS_MAX_PER_NODE: room for "
            f"{room:g} of {ingress_replicas} ingress replicas on the {len(alive)} live node(s)"
        )
    return problems
