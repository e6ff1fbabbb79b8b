"""`python -m tests.support.ray_probe ADDRESS`: what runs on a Ray cluster, as JSON.

Run in a process of its own, so a test never becomes a Ray driver itself: the live
actors (name, class, pid, restarts; read from the GCS, no dashboard needed) and every
shard actor's ShardStatus (`wa-shard-<p>` in the service's namespace).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


def probe(address: str) -> dict[str, Any]:
    """The cluster's live actors and the shards' statuses."""
    import ray
    from ray._private.state import state

    ray.init(
        address=address, namespace="wa-ingest", log_to_driver=False, logging_level=logging.ERROR
    )
    try:
        actors = [
            {
                "name": info["Name"],
                "class": info["ActorClassName"],
                "pid": info["Pid"],
                "restarts": info["NumRestarts"],
            }
            for info in state.actor_table(None, actor_state_name="ALIVE").values()
        ]
        shards: dict[str, Any] = {}
        for actor in actors:
            if actor["class"] == "ShardActor":
                handle = ray.get_actor(actor["name"])
                status: Any = ray.get(handle.status.remote(), timeout=30)
                shards[str(status.partition)] = status.model_dump()
        return {"actors": actors, "shards": shards}
    finally:
        ray.shutdown()


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
