"""Every Prometheus series the deployed service exposes, read from its real metric objects.

Two exporters (ARCHITECTURE.md "Observability"): the ingress replica's own registry
(`GET /metrics`, prometheus_client), and Ray's metrics endpoint (`WA_RAY_METRICS_PORT`),
which exports each `ray.util.metrics` object under `ray_<name>`. Both are built here
without a server or a Ray cluster (a Ray metric object is only a definition until Ray
runs), and each family is expanded to the series a scrape shows: `_total` for a counter
(`_created` too for prometheus_client's), `_bucket` (label `le`), `_sum` and `_count` for a
histogram, the name alone for a gauge.

`ray_metric_calls` finds every `metrics.Counter|Gauge|Histogram("name", ...)` written in the
project's modules, so a test can check that the exporters listed in `ray_exporters` are all
of them (a new exporter class not listed here fails that test, not silently a dashboard).

Ray's own series that the dashboards read are taken from Ray's installed sources: actor
states (`ray_actors`, a GCS metric, named with its labels by Ray's own Grafana panels) and
Serve's replica starts (`ray.serve.metrics.Counter`, which adds the Serve context tags).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.serve.metrics as serve_metrics
from ray.util import metrics as ray_metrics

from actors.account_metrics import RayAccountMetrics, RayTenantMetrics
from actors.archiver_metrics import RayArchiverMetrics
from actors.limiter_leases import RayLimiterMetrics
from actors.media_metrics import RayMediaMetrics
from actors.shard_actor import RayShardMetrics
from cluster.tenant_wiring import RayWatcherMetrics
from ingress.metrics import IngressMetrics

ROOT = Path(__file__).resolve().parents[2]
RAY_DIR = Path(ray.__file__).parent
PROJECT_PACKAGES = ("actors", "adapters", "cluster", "ingress", "models")

# Labels Prometheus adds to every scraped series (the target's), usable in any query.
TARGET_LABELS = frozenset({"job", "instance"})


@dataclass(frozen=True)
class Family:
    """One metric family as exported: its name, kind and label names (without `le`)."""

    name: str
    kind: str  # counter | gauge | histogram
    labels: frozenset[str]
    source: str  # ingress | ray | ray-builtin

    def series(self) -> dict[str, frozenset[str]]:
        """The series names a scrape shows for this family, with their label names."""
        if self.kind == "counter":
            names = {f"{self.name}_total": self.labels}
            if self.source == "ingress":  # prometheus_client's creation timestamps
                names[f"{self.name}_created"] = self.labels
            return names
        if self.kind == "histogram":
            names = {
                f"{self.name}_bucket": self.labels | {"le"},
                f"{self.name}_sum": self.labels,
                f"{self.name}_count": self.labels,
            }
            if self.source == "ingress":
                names[f"{self.name}_created"] = self.labels
            return names
        return {self.name: self.labels}


def ingress_families() -> list[Family]:
    """The ingress registry's families (a fresh IngressMetrics, as each replica builds)."""
    found = []
    for value in vars(IngressMetrics()).values():
        # prometheus_client keeps label names on the metric object only (`_labelnames`);
        # its collected families list labels per sample, and an unused metric has none.
        if hasattr(value, "_labelnames") and hasattr(value, "_type"):
            families = list(value.describe())
            (family,) = families
            found.append(Family(family.name, value._type, frozenset(value._labelnames), "ingress"))
    return found


def ray_exporters() -> list[object]:
    """One instance of every class of the project that defines ray.util.metrics objects."""
    return [
        RayShardMetrics(0),
        RayMediaMetrics(),
        RayArchiverMetrics(),
        RayAccountMetrics(),
        RayTenantMetrics(),
        RayLimiterMetrics(frozenset),
        RayWatcherMetrics("shard"),
    ]


_RAY_KINDS = {
    ray_metrics.Counter: "counter",
    ray_metrics.Gauge: "gauge",
    ray_metrics.Histogram: "histogram",
}


def _ray_metric_objects(exporter: object) -> Iterator[ray_metrics.Metric]:
    for value in vars(exporter).values():
        if isinstance(value, ray_metrics.Metric):
            yield value


def ray_families() -> list[Family]:
    """The project's ray.util.metrics objects as Ray's endpoint exports them (`ray_`)."""
    found = []
    for exporter in ray_exporters():
        for metric in _ray_metric_objects(exporter):
            info: dict[str, Any] = metric.info
            found.append(
                Family(
                    f"ray_{info['name']}",
                    _RAY_KINDS[type(metric)],
                    frozenset(info["tag_keys"]),
                    "ray",
                )
            )
    return found


def ray_metric_calls(packages: tuple[str, ...] = PROJECT_PACKAGES) -> set[str]:
    """Names of every `metrics.Counter|Gauge|Histogram("name", ...)` call in the project's
    modules, the `ray.util.metrics` module being imported as `metrics`."""
    names: set[str] = set()
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "metrics"
                    and node.func.attr in ("Counter", "Gauge", "Histogram")
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    names.add(node.args[0].value)
    return names


def _ray_actor_states() -> Family:
    """`ray_actors`, with the labels Ray's own default Grafana panels select and group it by
    (their expressions are format strings: `sum(ray_actors{{State!="DEAD",...}}) by (Name)`)."""
    panels = RAY_DIR / "dashboard" / "modules" / "metrics" / "dashboards"
    source = (panels / "default_dashboard_panels.py").read_text()
    labels: set[str] = set()
    for expr in re.findall(r"expr='([^']*\bray_actors\{\{[^']*)'", source):
        for selector in re.findall(r"\bray_actors\{\{(.*?)\}\}", expr):
            labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", selector))
        for grouped in re.findall(r"\bby \(([^)]*)\)", expr):
            labels |= {label.strip() for label in grouped.split(",")}
    assert labels, "Ray's default panels no longer select ray_actors"
    return Family("ray_actors", "gauge", frozenset(labels), "ray-builtin")


def _serve_replica_starts() -> Family:
    """Serve's replica start counter: defined in ray/serve/_private/replica.py with
    ray.serve.metrics, which adds the deployment, replica and application tags."""
    source = (RAY_DIR / "serve" / "_private" / "replica.py").read_text()
    assert re.search(r'metrics\.Counter\(\s*"serve_deployment_replica_starts"', source)
    tags = {serve_metrics.DEPLOYMENT_TAG, serve_metrics.REPLICA_TAG, serve_metrics.APPLICATION_TAG}
    return Family("ray_serve_deployment_replica_starts", "counter", frozenset(tags), "ray-builtin")


def ray_builtin_families() -> list[Family]:
    """Ray's own series the dashboards and alerts use."""
    return [_ray_actor_states(), _serve_replica_starts()]


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a scrape of the service shows, with the labels it can carry
    (the target labels included). Prometheus's own `up` is there: it exists for every
    scrape target."""
    series: dict[str, frozenset[str]] = {"up": TARGET_LABELS}
    for family in [*ingress_families(), *ray_families(), *ray_builtin_families()]:
        for name, labels in family.series().items():
            series[name] = labels | TARGET_LABELS
    return series
