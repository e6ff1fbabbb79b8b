"""Placement on several nodes and the ingress's autoscaling, from WA_* settings to the
Ray and Serve options the application is built with (cluster/placement.py)."""

from __future__ import annotations

from typing import Any

import pytest
from ray.serve.config import AutoscalingConfig

from cluster.placement import unplaceable
from cluster.serve_app import build_application
from cluster.settings import Settings, SettingsError
from cluster.wiring import Wiring


def _built(settings: Settings) -> tuple[Any, dict[str, Any]]:
    """The built ingress deployment and the shard pool's init kwargs."""
    app = build_application(
        Wiring.from_settings(settings), settings.ingress_scaling(), settings.placement_spec()
    )
    ingress: Any = app._bound_deployment
    pool: Any = ingress.init_args[1]._bound_deployment
    return ingress, {**pool.init_kwargs, "ray_actor_options": pool.ray_actor_options}


def test_defaults_add_no_placement_and_one_fixed_replica() -> None:
    """Nothing set: Ray's default scheduling and one ingress replica, as `make run` had."""
    ingress, pool = _built(Settings())
    assert pool["shard_options"] == {}
    assert pool["media_options"] == {}
    assert pool["ray_actor_options"] == {"num_cpus": 0}
    assert ingress.ray_actor_options == {"num_cpus": 0}
    assert ingress.num_replicas == 1
    assert ingress._deployment_config.autoscaling_config is None
    assert ingress._replica_config.max_replicas_per_node is None


def test_resources_labels_and_spread_reach_every_role() -> None:
    """Custom resources per actor, label selectors and SPREAD go to the shard and media
    actors' options; the ingress and the shard pool get resources and labels (Serve
    places replicas itself)."""
    settings = Settings(
        placement="spread",
        shard_resources="wa_shard=1",
        shard_labels="wa-role=worker",
        media_resources="wa_media=0.5, gpu_box=1",
        ingress_labels="wa-role=edge,zone=a",
        ingress_max_per_node=1,
        pool_labels="wa-role=head",
    )
    ingress, pool = _built(settings)
    assert pool["ray_actor_options"] == {"num_cpus": 0, "label_selector": {"wa-role": "head"}}
    assert pool["shard_options"] == {
        "resources": {"wa_shard": 1.0},
        "label_selector": {"wa-role": "worker"},
        "scheduling_strategy": "SPREAD",
    }
    assert pool["media_options"] == {
        "resources": {"wa_media": 0.5, "gpu_box": 1.0},
        "scheduling_strategy": "SPREAD",
    }
    assert ingress.ray_actor_options == {
        "num_cpus": 0,
        "label_selector": {"wa-role": "edge", "zone": "a"},
    }
    assert ingress._replica_config.max_replicas_per_node == 1


def test_autoscaling_config_is_serves_own_and_bounded_by_the_replica_settings() -> None:
    """WA_INGRESS_MAX_REPLICAS above WA_INGRESS_REPLICAS turns on Serve's autoscaler with
    the target and delays given; the config is one Serve's own model accepts."""
    settings = Settings(
        ingress_replicas=2,
        ingress_max_replicas=6,
        ingress_target_ongoing=12,
        ingress_upscale_delay_s=5,
        ingress_downscale_delay_s=120,
    )
    options = settings.ingress_scaling().deployment_options()
    config = AutoscalingConfig(**options["autoscaling_config"])
    assert (config.min_replicas, config.initial_replicas, config.max_replicas) == (2, 2, 6)
    assert config.target_ongoing_requests == 12
    assert (config.upscale_delay_s, config.downscale_delay_s) == (5, 120)
    ingress, _ = _built(settings)
    assert ingress._deployment_config.autoscaling_config.max_replicas == 6


@pytest.mark.parametrize(
    ("fields", "variable"),
    [
        ({"shard_resources": "wa_shard"}, "WA_SHARD_RESOURCES"),
        ({"shard_resources": "wa_shard=lots"}, "WA_SHARD_RESOURCES"),
        ({"media_resources": "wa_media=0"}, "WA_MEDIA_RESOURCES"),
        ({"ingress_resources": "CPU=1"}, "WA_INGRESS_RESOURCES"),
        ({"shard_labels": "wa-role="}, "WA_SHARD_LABELS"),
        ({"pool_resources": "head"}, "WA_POOL_RESOURCES"),
        ({"ingress_replicas": 3, "ingress_max_replicas": 2}, "WA_INGRESS_MAX_REPLICAS"),
        ({"ingress_target_ongoing": 0}, "WA_INGRESS_TARGET_ONGOING"),
        ({"ingress_max_per_node": -1}, "WA_INGRESS_MAX_PER_NODE"),
    ],
)
def test_settings_that_cannot_place_refuse_the_start(fields: dict[str, Any], variable: str) -> None:
    """A malformed resource or label list, or autoscaling bounds that cannot hold, fail the
    settings check naming the variable, before anything starts."""
    with pytest.raises(SettingsError, match=variable):
        Settings(**fields).check()


def node(alive: bool = True, labels: dict[str, str] | None = None, **resources: float) -> Any:
    """A `ray.nodes()` entry."""
    return {"Alive": alive, "Labels": labels or {}, "Resources": {"CPU": 2.0, **resources}}


def test_a_role_no_live_node_fits_is_named_before_anything_is_deployed() -> None:
    """Shards asking for `wa_shard=1` with room for 2 of 4 (a dead node's room is not
    counted), a pool label no node carries, and one replica per node for 2 replicas on 1
    node: each is reported with its settings; the default placement fits anywhere."""
    nodes = [node(wa_shard=2.0, labels={"wa-role": "worker"}), node(False, wa_shard=8.0)]
    placement = Settings(
        shard_resources="wa_shard=1",
        pool_labels="wa-role=head",
        ingress_max_per_node=1,
        ingress_replicas=2,
    ).placement_spec()
    problems = unplaceable(placement, nodes, shards=4, media_workers=1, ingress_replicas=2)
    assert len(problems) == 3
    assert problems[0].startswith("WA_SHARD_RESOURCES / WA_SHARD_LABELS: room for 2 of 4")
    assert problems[1].startswith("WA_POOL_RESOURCES / WA_POOL_LABELS: room for 0 of 1")
    assert "room for 1 of 2 ingress replicas" in problems[2]
    fits = unplaceable(
        Settings().placement_spec(), [node()], shards=4, media_workers=1, ingress_replicas=1
    )
    assert fits == []
    labelled = Settings(shard_labels="wa-role=worker").placement_spec()
    assert unplaceable(labelled, nodes, shards=4, media_workers=1, ingress_replicas=1) == []
