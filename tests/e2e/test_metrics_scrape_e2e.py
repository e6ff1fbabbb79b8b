"""End to end: what Prometheus scrapes from a running service is what the dashboards and
alert rules are checked against (tests/unit/test_dashboards.py reads the metric objects;
this reads the live endpoints).

Two ingress replicas, each answering `/metrics` on its own direct-ingress port from 30000
up (the ports docker/prometheus/prometheus.yml scrapes), and Ray's metrics endpoint on
WA_RAY_METRICS_PORT. Every `wa_*` / `ray_wa_*` series seen is in the catalogue with its
labels, and the series the dashboard reads under ordinary traffic are there.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import orjson
import pytest
from ray.serve._private import constants as serve_constants

from adapters.outbox import read_outbox
from tests.support import exported_metrics
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.service import free_port, running_service

pytestmark = pytest.mark.ray

SECRET = "e2e-metrics-secret"
REPLICA_PORTS = range(
    serve_constants.RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT,
    serve_constants.RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT + 8,  # prometheus.yml's targets
)
_SAMPLE = re.compile(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s")

# Under ordinary traffic (a few text messages), each of these appears.
INGRESS_SERIES = {
    "wa_webhook_requests_total",
    "wa_webhook_request_duration_seconds_bucket",
    "wa_inbox_append_duration_seconds_bucket",
    "wa_webhook_items_total",
    "wa_webhook_tenant_items_total",
}
RAY_SERIES = {
    "ray_wa_inbox_backlog",
    "ray_wa_shard_events_published_total",
    "ray_wa_shard_publish_duration_seconds_bucket",
    "ray_wa_shard_stalled_seconds",
    "ray_wa_tenant_events_total",
    "ray_wa_tenant_limiter_tokens_granted_total",
    "ray_actors",
    "ray_serve_deployment_replica_starts_total",
}


def _series(text: str) -> dict[str, set[str]]:
    """Series name -> label names of a Prometheus text exposition."""
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = set(re.findall(r'(\w+)="', match[2] or ""))
            found.setdefault(match[1], set()).update(labels)
    return found


def _scrape(url: str) -> dict[str, set[str]] | None:
    try:
        reply = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return _series(reply.text) if reply.status_code == 200 else None


def _eventually_scraped(url: str, wanted: set[str], timeout_s: float = 90) -> dict[str, set[str]]:
    """Scrape `url` until every series of `wanted` is there (Ray exports every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = _scrape(url) or {}
        if wanted <= set(seen):
            return seen
        assert time.monotonic() < deadline, f"{url}: never showed {sorted(wanted - set(seen))}"
        time.sleep(1)


def _ray_own_label(label: str) -> bool:
    """Labels Ray's exporter adds to every series (CamelCase, and OpenTelemetry's scope)."""
    return label[:1].isupper() or label.startswith("otel_scope_")


def test_the_live_endpoints_export_what_the_dashboards_are_checked_against(
    tmp_path: Path,
) -> None:
    """Each replica answers /metrics on its own port in Prometheus's target range; the
    series both endpoints show are the catalogue's, with its labels; the dashboard's
    everyday series are there."""
    metrics_port = free_port()
    env = {
        "WA_APP_SECRET": SECRET,
        "WA_INGRESS_REPLICAS": "2",
        "WA_RAY_METRICS_PORT": str(metrics_port),
    }
    data_dir = tmp_path / "data"
    catalogue = exported_metrics.exported_series()
    with running_service(data_dir, env) as service:
        for n in range(4):
            body = orjson.dumps(
                envelope(("messages", messages_value([text_message(f"wamid.m{n}", "16505550001")])))
            )
            raw, headers = signed(body, SECRET)
            reply = httpx.post(f"{service.url}/webhook", content=raw, headers=headers, timeout=10)
            assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 60
        while len(list(read_outbox(data_dir / "outbox.db", limit=100))) < 4:
            assert time.monotonic() < deadline, "the events were never published"
            time.sleep(0.25)

        replicas = {
            port: seen
            for port in REPLICA_PORTS
            if (seen := _scrape(f"http://127.0.0.1:{port}/metrics")) is not None
            and "wa_webhook_requests_total" in seen
        }
        assert len(replicas) == 2, f"replicas answering /metrics on {sorted(replicas)}"
        ray_seen = _eventually_scraped(f"http://127.0.0.1:{metrics_port}/metrics", RAY_SERIES)

    ingress_seen: dict[str, set[str]] = {}
    for seen in replicas.values():
        for name, labels in seen.items():
            ingress_seen.setdefault(name, set()).update(labels)
    missing = INGRESS_SERIES - set(ingress_seen)
    assert not missing, missing
    for name, labels in ingress_seen.items():
        if name.startswith("wa_"):
            assert name in catalogue, name
            assert labels <= catalogue[name], (name, labels - catalogue[name])
    for name, labels in ray_seen.items():
        if name.startswith("ray_wa_") or name in RAY_SERIES:
            assert name in catalogue, name
            ours = {label for label in labels if not _ray_own_label(label)}
            assert ours <= catalogue[name], (name, ours - catalogue[name])
