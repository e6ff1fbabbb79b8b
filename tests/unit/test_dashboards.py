"""The Grafana dashboards, the Prometheus config and the alert rules read what the service
exports, and every alert links to its section of the operations guide.

What the service exports is read from its metric objects (tests/support/exported_metrics.py:
the ingress registry as a replica builds it, the ray.util.metrics objects of every
exporter class, Ray's own series from Ray's installed sources), never from a list kept
here. Expressions are read with tests/support/promql.py (promtool is not installed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve._private import constants as serve_constants

import ingress.app  # noqa: F401 -- imports every module that defines a RequestRejected
from ingress.rejection import RequestRejected
from tests.support import exported_metrics, promql
from tests.support import shipped_configs as shipped

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DASHBOARDS = sorted((DOCKER / "grafana" / "dashboards").glob("*.json"))
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
ALERTS = DOCKER / "prometheus" / "alerts.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
GRAFANA_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def _dashboard(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def _panel_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target of every dashboard."""
    return [
        (f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"])
        for path in DASHBOARDS
        for panel in _panels(_dashboard(path))
        for target in panel.get("targets", [])
    ]


def _rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def _series_problems(expr: str, exported: dict[str, frozenset[str]]) -> list[str]:
    """What `expr` reads that the service does not export (empty: nothing)."""
    try:
        parsed = promql.parse(expr)
    except promql.PromQLError as exc:
        return [f"does not parse: {exc}"]
    problems: list[str] = []
    if not parsed.selectors:
        problems.append("selects no series")
    available: set[str] = set()
    for selector in parsed.selectors:
        if selector.name not in exported:
            problems.append(f"{selector.name!r} is not exported")
            continue
        labels = exported[selector.name]
        available |= labels
        problems += [
            f"{selector.name} has no label {label!r}"
            for label, _, _ in selector.matchers
            if label not in labels
        ]
    problems += [
        f"grouped by {label!r}, which no series has" for label in parsed.grouping - available
    ]
    return problems


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    """Every series name a scrape shows, with its labels."""
    return exported_metrics.exported_series()


def test_the_exporters_read_are_every_ray_metric_the_code_defines() -> None:
    """Each `metrics.Counter|Gauge|Histogram("name")` written in the project belongs to an
    exporter class the catalogue instantiates, and the instances define nothing else."""
    defined = exported_metrics.ray_metric_calls()
    built = {f.name.removeprefix("ray_") for f in exported_metrics.ray_families()}
    assert defined == built
    assert {"wa_inbox_backlog", "wa_tenant_limiter_wait_seconds"} <= built


def test_the_query_check_refuses_unknown_series_labels_and_functions(
    exported: dict[str, frozenset[str]],
) -> None:
    """The checker itself: a series nobody exports, a label the series lacks, a grouping
    label no series has, an unknown function and a broken expression are each reported."""
    assert _series_problems("sum(rate(ray_wa_shard_events_published_total[5m]))", exported) == []
    assert _series_problems("wa_webhook_requests", exported)  # the family, not a series
    assert _series_problems('ray_wa_inbox_backlog{tenant="a"}', exported)
    assert _series_problems("sum by (tenant) (ray_wa_inbox_backlog)", exported)
    assert _series_problems("rates(ray_wa_inbox_backlog[5m])", exported)
    assert _series_problems("sum(ray_wa_inbox_backlog", exported)
    assert _series_problems("sum by (le) (rate(ray_wa_inbox_backlog[5m]))", exported)


@pytest.mark.parametrize(("where", "expr"), _panel_queries())
def test_every_dashboard_query_reads_exported_series_and_labels(
    where: str, expr: str, exported: dict[str, frozenset[str]]
) -> None:
    """Each panel target parses and reads only exported series, by their own labels."""
    assert _series_problems(expr, exported) == [], where


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_rule_reads_exported_series_and_labels(
    rule: dict[str, Any], exported: dict[str, frozenset[str]]
) -> None:
    """Each alert's expression parses and reads only exported series, by their labels."""
    assert _series_problems(rule["expr"], exported) == []


def test_template_variables_read_exported_labels(exported: dict[str, frozenset[str]]) -> None:
    """A dashboard variable's `label_values(series, label)` names an exported series and one
    of its labels, and every `$variable` a query uses is defined (or Grafana's own)."""
    for path in DASHBOARDS:
        dashboard = _dashboard(path)
        defined = {"__rate_interval", "__interval", "__range"}
        for variable in dashboard.get("templating", {}).get("list", []):
            defined.add(variable["name"])
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", text)
            assert match, f"{path.name}: ${variable['name']}: {text}"
            assert match[2] in exported[match[1]], f"{path.name}: ${variable['name']}"
        for where, expr in _panel_queries():
            if where.startswith(path.name):
                used = {a or b for a, b in GRAFANA_VARIABLE.findall(expr)}
                assert used <= defined, where


def _outcome_codes() -> set[str]:
    codes = {"accepted", "duplicate"}  # the receiver's own outcomes (ingress/receiver.py)
    pending = list(RequestRejected.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        codes.add(cls.code)
    return codes


def test_outcome_values_queried_are_codes_the_ingress_answers() -> None:
    """`outcome="..."` in a panel or an alert names an outcome the ingress counts (accepted,
    duplicate or a RequestRejected code): a renamed code cannot leave a silent alert."""
    codes = _outcome_codes()
    exprs = [expr for _, expr in _panel_queries()] + [rule["expr"] for rule in _rules()]
    seen = 0
    for expr in exprs:
        for selector in promql.parse(expr).selectors:
            for label, _, value in selector.matchers:
                if label == "outcome":
                    seen += 1
                    assert set(value.split("|")) <= codes, expr
    assert seen >= 2


def test_the_dashboard_shows_what_the_operations_guide_relies_on() -> None:
    """The panels cover the ingress (rate, latency, rejections), the inbox backlog per
    partition, publish latency and confirms, dead letters, per-tenant rates and limiter
    waits, tokens and throttles, media outcomes and Ray's actor restarts."""
    read = {
        selector.name for _, expr in _panel_queries() for selector in promql.parse(expr).selectors
    }
    wanted = {
        "wa_webhook_requests_total",
        "wa_webhook_request_duration_seconds_bucket",
        "wa_webhook_signature_failures_total",
        "ray_wa_inbox_backlog",
        "ray_wa_shard_stalled_seconds",
        "ray_wa_shard_publish_duration_seconds_bucket",
        "ray_wa_shard_events_published_total",
        "ray_wa_shard_publish_failures_total",
        "ray_wa_shard_dead_lettered_total",
        "wa_webhook_tenant_items_total",
        "ray_wa_tenant_events_total",
        "ray_wa_tenant_limiter_wait_seconds_bucket",
        "ray_wa_tenant_limiter_tokens_granted_total",
        "ray_wa_tenant_limiter_throttles_total",
        "ray_wa_media_files_total",
        "ray_actors",
    }
    assert wanted <= read, wanted - read
    partitions = [
        expr
        for _, expr in _panel_queries()
        if "ray_wa_inbox_backlog" in expr and "partition" in expr
    ]
    assert partitions, "no panel shows the backlog per partition"


def test_panels_have_unique_ids_and_use_the_provisioned_datasource() -> None:
    """Grafana refuses duplicate panel ids; every panel and target names the datasource uid
    that docker/grafana/provisioning provisions."""
    (source,) = yaml.safe_load(
        (DOCKER / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"]
    for path in DASHBOARDS:
        dashboard = _dashboard(path)
        ids = [panel["id"] for panel in _panels(dashboard)]
        assert len(ids) == len(set(ids)), path.name
        for panel in _panels(dashboard):
            for item in [panel, *panel.get("targets", [])]:
                if "datasource" in item:
                    assert item["datasource"] == {"type": "prometheus", "uid": source["uid"]}
    assert DASHBOARDS


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    inside_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            inside_code = not inside_code
        match = re.match(r"(#{1,6})\s+(.*?)\s*#*$", line)
        if match and not inside_code:
            slug, n = _slug(match[2]), 1
            candidate = slug
            while candidate in anchors:
                candidate, n = f"{slug}-{n}", n + 1
            anchors.add(candidate)
    return anchors


def test_alert_rules_are_complete_and_well_formed() -> None:
    """Each rule has a unique name, a severity, a summary, a description and a runbook
    link; `for` is a duration; the alerts cover inbox lag, dead letters, readiness, publish
    failures, stalled partitions and the limiter."""
    rules = _rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        if "for" in rule:
            assert re.fullmatch(r"(\d+[smh])+", rule["for"]), rule["alert"]
    read = {s.name for rule in rules for s in promql.parse(rule["expr"]).selectors}
    assert {
        "ray_wa_inbox_backlog",  # inbox lag
        "ray_wa_shard_dead_lettered_total",
        "up",  # readiness: the ingress answers
        "wa_webhook_requests_total",  # readiness: 503 inbox_unavailable
        "ray_wa_shard_publish_failures_total",
        "ray_wa_shard_stalled_seconds",
        "ray_wa_tenant_limiter_throttles_total",
    } <= read


def test_alert_runbook_links_resolve_to_sections_of_the_operations_guide() -> None:
    """Every runbook_url is docs/operations.md#<anchor> of an existing heading, a section of
    its own per alert (the anchor is the alert's name)."""
    anchors = _anchors(OPERATIONS)
    for rule in _rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert (ROOT / path).resolve() == OPERATIONS, url
        assert anchor in anchors, url
        assert anchor == rule["alert"].lower(), url


def _exposed_ports(service: str) -> set[int]:
    """The ports a compose service exposes to the network (`8000`, `30000-30007`)."""
    ports: set[int] = set()
    for item in shipped.compose()["services"][service].get("expose", []):
        low, _, high = str(item).partition("-")
        ports |= set(range(int(low), int(high or low) + 1))
    return ports


def test_prometheus_scrapes_each_ingress_replica_and_rays_metrics_port_of_the_stack() -> None:
    """prometheus.yml scrapes every ingress replica on its own direct-ingress port (within
    Serve's allocation range, room for replacements of every replica), the webhook port
    for `up` only, Ray's export on WA_RAY_METRICS_PORT; the ports are exposed by compose;
    the rules file is loaded from where compose mounts it; every `job` an alert names
    is a scrape job."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    env = shipped.compose_env({"WA_APP_SECRET": "x", "WA_VERIFY_TOKEN": "y"})
    exposed = _exposed_ports("wa-ingest")

    replicas = jobs["wa-ingest"]
    assert replicas.get("metrics_path", "/metrics") == "/metrics"
    (static,) = replicas["static_configs"]
    ports = set()
    for target in static["targets"]:
        host, _, port = target.rpartition(":")
        assert host == "wa-ingest", target
        ports.add(int(port))
    low = serve_constants.RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT
    assert ports == set(range(low, low + len(ports)))  # the lowest ports Serve hands out
    assert max(ports) <= serve_constants.RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT
    assert len(ports) >= 2 * int(env["WA_INGRESS_REPLICAS"])
    assert ports <= exposed

    edge = jobs["wa-ingest-edge"]
    assert edge["static_configs"][0]["targets"] == [f"wa-ingest:{env['WA_PORT']}"]
    assert edge["metric_relabel_configs"] == [
        {"source_labels": ["__name__"], "regex": ".+", "action": "drop"}
    ]
    (ray_target,) = jobs["ray"]["static_configs"][0]["targets"]
    assert ray_target == f"wa-ingest:{env['WA_RAY_METRICS_PORT']}"
    assert {int(env["WA_PORT"]), int(env["WA_RAY_METRICS_PORT"])} <= exposed

    mounts = _mounts("prometheus")
    for rule_file in config["rule_files"]:
        assert mounts[rule_file] == ALERTS
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS
    named = set()
    for rule in _rules():
        for selector in promql.parse(rule["expr"]).selectors:
            named |= {value for label, _, value in selector.matchers if label == "job"}
    assert named
    assert named <= set(jobs)


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboards() -> None:
    """compose mounts the provisioning folders where Grafana reads them, the dashboard
    provider's path is where the dashboards are mounted, and the datasource is the
    stack's Prometheus."""
    mounts = _mounts("grafana")
    provisioning = DOCKER / "grafana" / "provisioning"
    assert mounts["/etc/grafana/provisioning/datasources"] == provisioning / "datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == provisioning / "dashboards"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "wa-ingest.yaml").read_text())[
        "providers"
    ]
    assert mounts[provider["options"]["path"]] == DOCKER / "grafana" / "dashboards"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in shipped.compose()["services"]


def _mounts(service: str) -> dict[str, Path]:
    """A compose service's bind mounts: container path -> host path."""
    found = {}
    for volume in shipped.compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (shipped.COMPOSE.parent / source).resolve()
    return found


def test_the_operations_guide_links_resolve() -> None:
    """Every relative Markdown link of docs/operations.md names a file of the repository,
    and every `#anchor` a heading of the file it points into."""
    text = OPERATIONS.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if re.match(r"\w+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = (OPERATIONS.parent / path).resolve() if path else OPERATIONS
        assert target.exists(), link
        if anchor:
            assert anchor in _anchors(target), link
