"""ray-config/ and docker/ stay valid, and every shipped configuration is a safe production one.

Each file's service environment is read from the file itself (tests/support/shipped_configs.py):
it must build valid production settings once its secret references get values and the
allowlist file it points at is generated (`python -m cluster allowlist from-whois`), and the
way it decides a request's source address must be the one docs/security.md describes.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shutil
import subprocess
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs shipped; validators only
import pytest
import yaml
from pydantic import BaseModel
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve._private import constants as serve_constants
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from cluster.__main__ import main
from cluster.backends import RabbitPublisherConfig, RedisInboxConfig
from cluster.serve_app import app_builder
from cluster.settings import Settings, SettingsError
from cluster.wiring import Wiring
from ingress.client_ip import LOOPBACK, parse_networks
from tests.support import shipped_configs as shipped

ROOT = Path(__file__).resolve().parents[2]
WHOIS = ROOT / "tests" / "fixtures" / "whois" / "as32934_routes.txt"
META = "31.13.24.1"  # inside Meta's AS32934 routes (the whois fixture)

# Values for the secret references of the files: compose's ${...} and KubeRay's secretKeyRef.
COMPOSE_SECRETS = {
    "WA_APP_SECRET": "dummy-app-secret",
    "WA_VERIFY_TOKEN": "dummy-verify-token",
}
KUBE_SECRETS = {
    ("wa-ingest", "app-secret"): "dummy-app-secret",
    ("wa-ingest", "verify-token"): "dummy-verify-token",
    ("wa-ingest", "admin-token"): "dummy-admin-token-0123456789",
    ("wa-ingest", "access-token"): "dummy-access-token",
    ("wa-ingest", "redis-url"): "redis://redis:6379/0",
    ("wa-ingest", "rabbitmq-url"): "amqp://user:dummy@rabbitmq:5672/",
    ("wa-ingest", "s3-access-key-id"): "dummy-key-id",
    ("wa-ingest", "s3-secret-access-key"): "dummy-secret-key",
}
# What an operator puts into every Ray node's environment for `serve deploy serve.yaml`.
CLUSTER_SECRETS = {
    "WA_APP_SECRET": "dummy-app-secret",
    "WA_VERIFY_TOKEN": "dummy-verify-token",
    "WA_REDIS_URL": "redis://redis:6379/0",
    "WA_RABBITMQ_URL": "amqp://user:dummy@rabbitmq:5672/",
}
SECRET_VARIABLES = (
    "WA_APP_SECRET",
    "WA_APP_SECRET_PREVIOUS",
    "WA_VERIFY_TOKEN",
    "WA_ACCESS_TOKEN",
    "WA_ADMIN_TOKEN",
)


@dataclass
class Shipped:
    """One shipped configuration: the service's environment, the builder's args, and the
    allowlist path it names (a path inside the container / on the node)."""

    env: dict[str, str]
    args: dict[str, Any] = field(default_factory=dict)

    def allowlist_ref(self) -> str | None:
        """The allowlist file the configuration points at (args win over env, as in Settings)."""
        value = self.args.get("allowlist_file", self.env.get("WA_ALLOWLIST_FILE"))
        return None if value is None else str(value)

    def with_allowlist(self, path: Path) -> Shipped:
        """The same configuration with the allowlist read from `path` instead."""
        env, args = dict(self.env), dict(self.args)
        if "allowlist_file" in args:
            args["allowlist_file"] = str(path)
        else:
            env["WA_ALLOWLIST_FILE"] = str(path)
        return Shipped(env, args)


def _compose() -> Shipped:
    return Shipped(shipped.compose_env(COMPOSE_SECRETS))


def _kuberay(container: str) -> Callable[[], Shipped]:
    def build() -> Shipped:
        serve = shipped.serve_config(shipped.rayservice()["spec"]["serveConfigV2"])
        return Shipped(shipped.kuberay_env(container, KUBE_SECRETS), shipped.app_args(serve))

    return build


def _serve_yaml() -> Shipped:
    return Shipped(
        {**shipped.dockerfile_env(), **CLUSTER_SECRETS}, shipped.app_args(shipped.serve_yaml())
    )


CONFIGS: dict[str, Callable[[], Shipped]] = {
    "compose": _compose,
    "kuberay-head": _kuberay("ray-head"),
    "kuberay-worker": _kuberay("ray-worker"),
    "serve.yaml": _serve_yaml,
}


@pytest.fixture
def meta_allowlist(tmp_path: Path) -> Path:
    """Meta's ranges as an operator generates them (from the whois fixture)."""
    out = tmp_path / "allowlist.txt"
    assert main(["allowlist", "from-whois", str(WHOIS), "-o", str(out)]) == 0
    return out


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Callable[[Mapping[str, str]], None]:
    """Replace the process's WA_* environment with a configuration's (restored after)."""
    for name in [n for n in os.environ if n.startswith("WA_")]:
        monkeypatch.delenv(name)

    def apply(env: Mapping[str, str]) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return apply


def _settings(config: Shipped, environ: Callable[[Mapping[str, str]], None]) -> Settings:
    environ(config.env)
    return Settings(**config.args)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_configuration_builds_valid_production_settings(
    name: str, meta_allowlist: Path, environ: Callable[[Mapping[str, str]], None]
) -> None:
    """Production profile, allowlist on and read from the referenced file, all interfaces."""
    config = CONFIGS[name]()
    assert config.allowlist_ref(), f"{name} configures no allowlist file"
    settings = _settings(config.with_allowlist(meta_allowlist), environ)
    wiring = Wiring.from_settings(settings)
    assert settings.profile == "production"
    assert settings.host == "0.0.0.0"  # noqa: S104 -- inside a container: all interfaces
    policy = wiring.ingress.source_policy
    assert policy.allowed, "the allowlist is off or empty"
    assert policy.allows(ipaddress.ip_address(META))
    assert not policy.allows(ipaddress.ip_address("127.0.0.1"))
    assert isinstance(wiring.inbox, RedisInboxConfig)
    assert isinstance(wiring.publisher, RabbitPublisherConfig)


def test_the_image_alone_refuses_to_start(environ: Callable[[Mapping[str, str]], None]) -> None:
    """The Dockerfile's ENV is production: no secrets, stores or allowlist, no start (never
    the embedded profile's public development secret on all interfaces)."""
    environ(shipped.dockerfile_env())
    settings = Settings()
    assert settings.profile == "production"
    with pytest.raises(SettingsError):
        Wiring.from_settings(settings)


def test_the_shipped_allowlist_placeholder_refuses_to_start(
    environ: Callable[[Mapping[str, str]], None],
) -> None:
    """compose mounts docker/allowlist.txt, a placeholder: until it is generated, no start."""
    config = _compose()
    (volume,) = [v for v in _volumes("wa-ingest") if v["target"] == config.allowlist_ref()]
    placeholder = (shipped.COMPOSE.parent / volume["source"]).resolve()
    assert placeholder == ROOT / "docker" / "allowlist.txt"
    assert volume["read_only"]
    with pytest.raises(SettingsError, match="allowlist"):
        Wiring.from_settings(_settings(config.with_allowlist(placeholder), environ))


def test_kuberay_mounts_the_allowlist_file_it_names_in_every_ray_pod() -> None:
    """The builder may run on any node: every Ray pod mounts the allowlist ConfigMap there."""
    serve = shipped.serve_config(shipped.rayservice()["spec"]["serveConfigV2"])
    path = Path(shipped.app_args(serve)["allowlist_file"])
    for pod in shipped.kuberay_pod_specs():
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = [
            m
            for m in container["volumeMounts"]
            if path.is_relative_to(m["mountPath"]) and "configMap" in volumes[m["name"]]
        ]
        assert mounts, f"{container['name']} does not mount {path}"


def test_secrets_in_shipped_files_are_references() -> None:
    """compose: ${VAR:?...} (required) or ${VAR:-} (optional); KubeRay: secretKeyRef, and no
    credential in any literal value; serve.yaml: no secret at all (the nodes' environment)."""
    declared = shipped.compose()["services"]["wa-ingest"]["environment"]
    for name in SECRET_VARIABLES:
        if name in declared:
            assert re.fullmatch(rf"\$\{{{name}(:\?.+|:-)\}}", declared[name]), name
    for container in shipped.kuberay_containers().values():
        for item in container.get("env", []):
            if item["name"] in SECRET_VARIABLES or item["name"].endswith("_URL"):
                assert "secretKeyRef" in item.get("valueFrom", {}), item["name"]
            assert "@" not in str(item.get("value", "")), item["name"]
    args = shipped.app_args(shipped.serve_yaml())
    assert not {f"WA_{a.upper()}" for a in args} & set(SECRET_VARIABLES)


def test_serve_config_validates_and_its_builder_builds_the_application(
    meta_allowlist: Path, environ: Callable[[Mapping[str, str]], None]
) -> None:
    """serve.yaml is a valid ServeDeploySchema listening on all interfaces, and
    app_builder(args) returns an Application in the cluster's environment."""
    config = ServeDeploySchema.model_validate(shipped.serve_yaml())
    assert config.http_options.host == "0.0.0.0"  # noqa: S104 -- every node's Serve HAProxy
    (app,) = config.applications
    assert app.import_path == "cluster.serve_app:app_builder"
    shipped_config = _serve_yaml().with_allowlist(meta_allowlist)
    environ(shipped_config.env)
    built = app_builder(shipped_config.args)
    assert type(built).__name__ == "Application"
    names = {d.name for d in app.deployments}
    assert names == {"WebhookIngress", "ShardPool"}


def _pydantic_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation allows (through Optional, Union, List)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _pydantic_models(arg)]


def _unknown_keys(model: type[BaseModel], data: Mapping[str, Any], where: str) -> list[str]:
    """Keys of `data` that are no field of `model`, recursively. Serve's schema classes
    ignore unknown keys (pydantic's default), so `max_replica: 3` would pass them unseen."""
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    problems: list[str] = []
    for key, value in data.items():
        if key not in fields:
            problems.append(f"{where}.{key}")
            continue
        for sub in _pydantic_models(fields[key].annotation):
            items = (
                [(f"{where}.{key}[{i}]", item) for i, item in enumerate(value)]
                if isinstance(value, list)
                else [(f"{where}.{key}", value)]
            )
            for place, item in items:
                if isinstance(item, Mapping):
                    problems += _unknown_keys(sub, item, place)
    return problems


def _serve_configs() -> dict[str, dict[str, Any]]:
    return {
        "serve.yaml": shipped.serve_yaml(),
        "kuberay serveConfigV2": shipped.serve_config(
            shipped.rayservice()["spec"]["serveConfigV2"]
        ),
    }


@pytest.mark.parametrize("name", ["serve.yaml", "kuberay serveConfigV2"])
def test_serve_configs_use_only_serves_own_fields_and_valid_autoscaling(name: str) -> None:
    """Every key of the Serve config is a field of Serve's schema class at that place, and
    each autoscaling_config is one Serve's AutoscalingConfig accepts (min <= max, ...)."""
    config = _serve_configs()[name]
    assert _unknown_keys(ServeDeploySchema, config, name) == []
    for app in ServeDeploySchema.model_validate(config).applications:
        for deployment in app.deployments:
            autoscaling = deployment.autoscaling_config
            if isinstance(autoscaling, dict):
                AutoscalingConfig(**autoscaling)


def test_the_serve_field_check_refuses_a_misspelt_field() -> None:
    """The check above does catch what ServeDeploySchema lets through."""
    config = copy.deepcopy(shipped.serve_yaml())
    config["applications"][0]["deployments"][0]["autoscaling_config"]["max_replica"] = 3
    config["applications"][0]["deployments"][1]["num_replica"] = 1
    ServeDeploySchema.model_validate(config)  # Serve's schema alone accepts both
    assert _unknown_keys(ServeDeploySchema, config, "serve.yaml") == [
        "serve.yaml.applications[0].deployments[0].autoscaling_config.max_replica",
        "serve.yaml.applications[0].deployments[1].num_replica",
    ]


@pytest.mark.parametrize("name", ["cluster.yaml", "kuberay-rayservice.yaml"])
def test_cluster_manifests_parse(name: str) -> None:
    """The launcher and KubeRay manifests are well-formed YAML naming the app builder."""
    text = (ROOT / "ray-config" / name).read_text()
    assert yaml.safe_load(text)
    if name.startswith("kuberay"):
        serve = ServeDeploySchema.model_validate(
            shipped.serve_config(shipped.rayservice()["spec"]["serveConfigV2"])
        )
        assert serve.applications[0].name == "wa-ingest"
        assert serve.http_options.host == "0.0.0.0"  # noqa: S104 -- the pod's interfaces


# --- Deployment files against their tools' own schemas ---

RAYSERVICE_SCHEMA = ROOT / "tests" / "fixtures" / "kuberay" / "rayservice-v1.schema.json"
CLUSTER_YAML = ROOT / "ray-config" / "cluster.yaml"


def _launcher_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text())
    return loaded


def _ray_up_check(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does with a config before launching anything: fill Ray's defaults for
    the provider, then validate against ray/autoscaler/ray-schema.json and its rules."""
    prepared: dict[str, Any] = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_launcher_config_passes_rays_own_validation() -> None:
    """cluster.yaml is what `ray up` accepts, and it autoscales a worker group: a head type
    with no workers of its own, a worker type between min_workers and max_workers."""
    prepared = _ray_up_check(_launcher_config())
    types = prepared["available_node_types"]
    head = prepared["head_node_type"]
    assert types[head]["max_workers"] == 0
    workers = {name: t for name, t in types.items() if name != head}
    assert workers
    for node_type in workers.values():
        assert 0 <= node_type["min_workers"] < node_type["max_workers"] <= prepared["max_workers"]
    assert prepared["idle_timeout_minutes"] > 0  # the autoscaler scales in too


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["available_node_types"]["worker"].update(min_worker=1),  # a typo
        lambda c: c["available_node_types"]["worker"].update(resources={"CPU": -1}),
        lambda c: c.update(head_node_type="nope"),
        lambda c: c.update(max_workers=0),  # below the workers' min_workers
    ],
    ids=["unknown-field", "negative-resource", "unknown-head-type", "max-below-min"],
)
def test_the_launcher_check_refuses_a_broken_config(
    breakage: Callable[[dict[str, Any]], None],
) -> None:
    """Ray's validation as called above does refuse what `ray up` would refuse."""
    config = _launcher_config()
    breakage(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _ray_up_check(config)


def _rayservice_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(RAYSERVICE_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_kuberay_manifest_validates_against_the_rayservice_schema() -> None:
    """The RayService passes the schema written from KubeRay's v1 API types (closed objects:
    a misspelt or misplaced field fails)."""
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _rayservice_validator().iter_errors(shipped.rayservice())
    ]
    assert errors == []


def _worker_group(manifest: dict[str, Any]) -> dict[str, Any]:
    group: dict[str, Any] = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    return group


def _first_container(group: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = group["template"]["spec"]["containers"][0]
    return container


@pytest.mark.parametrize(
    "breakage",
    [
        lambda m: _worker_group(m).pop("groupName"),
        lambda m: _worker_group(m).update(minReplica=1),
        lambda m: m["spec"]["rayClusterConfig"].update(enableInTreeAutoScaling=True),
        lambda m: _first_container(_worker_group(m))["resources"]["limits"].update(cpu="2 cores"),
        lambda m: _first_container(_worker_group(m))["livenessProbe"].update(exec={"command": []}),
        lambda m: _first_container(_worker_group(m))["env"].append({"value": "x"}),
    ],
    ids=[
        "no-group-name",
        "typo",
        "misspelt-autoscaling",
        "bad-quantity",
        "two-handlers",
        "no-name",
    ],
)
def test_the_rayservice_schema_refuses_broken_manifests(
    breakage: Callable[[dict[str, Any]], None],
) -> None:
    """The schema is not a formality: each of these breakages of the manifest fails it."""
    manifest = copy.deepcopy(shipped.rayservice())
    breakage(manifest)
    assert list(_rayservice_validator().iter_errors(manifest))


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_kuberay_cluster_autoscales_with_probes_resources_and_secret_references() -> None:
    """The autoscaler is on and the worker group can grow; every Ray container has a
    readiness and a liveness probe, CPU and memory requests within its limits, the HAProxy
    ingress flag and the service's secrets from the Secret; pods run as non-root."""
    cluster = shipped.rayservice()["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
        assert group["minReplicas"] < group["maxReplicas"]
    for pod in shipped.kuberay_pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True
    for name, container in shipped.kuberay_containers().items():
        assert {"readinessProbe", "livenessProbe"} <= set(container), name
        resources = container["resources"]
        for kind in ("cpu", "memory"):
            assert kind in resources["requests"], name
            assert kind in resources["limits"], name
        assert _cpu(resources["requests"]["cpu"]) <= _cpu(resources["limits"]["cpu"]), name
        env = {item["name"]: item for item in container["env"]}
        assert env["RAY_SERVE_ENABLE_HA_PROXY"]["value"] == "1", name
        for secret in ("WA_APP_SECRET", "WA_VERIFY_TOKEN", "WA_ADMIN_TOKEN"):
            assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == "wa-ingest", secret
        for store in ("WA_REDIS_URL", "WA_RABBITMQ_URL"):
            assert "secretKeyRef" in env[store]["valueFrom"], store


def _ray_serve_flags() -> dict[str, set[str]]:
    """Every RAY_SERVE_* variable the shipped files set, by file, with its values."""
    found: dict[str, set[str]] = {}
    sources = {
        "Dockerfile": " ".join(f"{k}={v}" for k, v in shipped.dockerfile_env().items()),
        "cluster.yaml": CLUSTER_YAML.read_text(),
        "kuberay": " ".join(
            f"{item['name']}={item.get('value', '')}"
            for container in shipped.kuberay_containers().values()
            for item in container.get("env", [])
        ),
    }
    for where, text in sources.items():
        for name, value in re.findall(r"\b(RAY_SERVE_\w+)=(\S*)", text):
            found.setdefault(f"{where}:{name}", set()).add(value)
    return found


def test_serve_variables_set_by_the_shipped_files_are_serves_own() -> None:
    """Each RAY_SERVE_* variable set is one Serve reads (ray/serve/_private/constants.py),
    so a misspelt flag cannot silently leave Serve's default in place; the HAProxy ingress
    is on in the image, the launcher's nodes and KubeRay's pods."""
    flags = _ray_serve_flags()
    for key in flags:
        name = key.split(":", 1)[1]
        assert hasattr(serve_constants, name), key
    for where in ("Dockerfile", "cluster.yaml", "kuberay"):
        assert flags[f"{where}:RAY_SERVE_ENABLE_HA_PROXY"] == {"1"}, where


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "docker" / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck_and_a_pinned_base() -> None:
    """A build stage and a runtime stage that copies from it; every base pinned to a patch
    release (or a digest), never `latest`; the final stage runs as a non-root uid and has a
    HEALTHCHECK against /healthz on the service's port."""
    instructions = _dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2
    for base in froms:
        image = base.split()[0]
        assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:[0-9a-f]{64}$", image), image
    last = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    final = instructions[last:]
    assert any(k == "COPY" and rest.startswith("--from=") for k, rest in final)
    (user,) = [rest for keyword, rest in final if keyword == "USER"]
    assert user.split(":")[0] not in {"0", "root"}
    (healthcheck,) = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    port = shipped.dockerfile_env()["WA_PORT"]
    assert f"127.0.0.1:{port}/healthz" in healthcheck
    assert not any(k == "RUN" and "pip install" in rest for k, rest in final)  # build stage only


def test_compose_runs_the_full_local_stack() -> None:
    """RabbitMQ with its management plugin, Redis with AOF always, MinIO with its bucket
    made, the service built from docker/Dockerfile, Prometheus with the rules and Grafana
    provisioned; every file compose mounts exists."""
    services = shipped.compose()["services"]
    assert services["rabbitmq"]["image"].endswith("-management")
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["wa-ingest"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["wa-ingest"]["depends_on"]["minio-init"] == {
        "condition": "service_completed_successfully"
    }
    env = shipped.compose_env(COMPOSE_SECRETS)
    assert env["WA_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert f"local/{env['WA_S3_BUCKET']}" in " ".join(services["minio-init"]["command"])
    for name in ("prometheus", "grafana"):
        assert name in services
    for service in services:
        for volume in _volumes(service):
            if volume["source"].startswith("."):
                assert (shipped.COMPOSE.parent / volume["source"]).exists(), volume["source"]
    for service in services.values():
        assert ":latest" not in service.get("image", ":pinned"), service["image"]


# --- Who a request came from (docs/security.md, "Source-IP allowlist and proxies") ---


def _volumes(service: str) -> list[dict[str, Any]]:
    """A compose service's volumes in long form (source, target, read_only)."""
    found: list[dict[str, Any]] = []
    for volume in shipped.compose()["services"][service].get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            volume = {"source": source, "target": target, "read_only": mode == ["ro"]}
        found.append(volume)
    return found


def _frontend_lines(cfg: str) -> list[str]:
    """The directives of the haproxy config's frontend section(s), comments removed."""
    lines, inside = [], False
    for raw in cfg.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if line and not line[0].isspace():
            inside = line.startswith("frontend ")
        elif inside and line.strip():
            lines.append(" ".join(line.split()))
    return lines


def test_compose_lets_requests_in_only_through_a_front_proxy_that_replaces_the_header() -> None:
    """The front proxy is the only published way in; its config replaces X-Forwarded-For
    with the TCP peer; the service's own port is not published; the service believes the
    header only from loopback, which is Serve's HAProxy relaying the front proxy's value."""
    services = shipped.compose()["services"]
    front, service = services["front"], services["wa-ingest"]
    assert front["image"].startswith("haproxy:")
    (cfg_volume,) = _volumes("front")
    assert (shipped.COMPOSE.parent / cfg_volume["source"]).resolve() == shipped.FRONT_PROXY_CFG
    assert cfg_volume["target"] == "/usr/local/etc/haproxy/haproxy.cfg"
    (published,) = front["ports"]
    assert published.endswith(":" + front["environment"]["FRONT_BIND"].rsplit(":", 1)[1])
    env = shipped.compose_env(COMPOSE_SECRETS)
    assert front["environment"]["BACKEND"] == f"wa-ingest:{env['WA_PORT']}"
    assert "ports" not in service, "the service's port is published: clients can skip the proxy"
    assert "X-Forwarded-For %[src]" in " ".join(
        line
        for line in _frontend_lines(shipped.FRONT_PROXY_CFG.read_text())
        if line.startswith("http-request set-header")
    )
    assert parse_networks([env["WA_TRUSTED_PROXIES"]]) == parse_networks(LOOPBACK)


@pytest.mark.parametrize("name", ["kuberay-head", "serve.yaml"])
def test_cluster_configurations_without_a_front_proxy_never_read_the_header(
    name: str, meta_allowlist: Path, environ: Callable[[Mapping[str, str]], None]
) -> None:
    """serve.yaml and KubeRay ship no proxy in front of Serve's HAProxy, which passes a
    client's X-Forwarded-For through from loopback: the source is the TCP peer, never the
    header, so a spoofed Meta address from loopback is refused."""
    settings = _settings(CONFIGS[name]().with_allowlist(meta_allowlist), environ)
    policy = Wiring.from_settings(settings).ingress.source_policy
    assert policy.trusted_proxies == ()
    client = policy.client("127.0.0.1", [META])
    assert str(client) == "127.0.0.1"
    assert not policy.allows(client)


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (from the dev extras) finds nothing in docker/Dockerfile."""
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "docker/Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_is_valid() -> None:
    """`docker-compose config` accepts the full local stack with its secret references set."""
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker/compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        env={**COMPOSE_SECRETS, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
