"""ray-config/ and docker/ stay valid, and every shipped configuration is a safe production one.

Each file's service environment is read from the file itself (tests/support/shipped_configs.py):
it must build valid production settings once its secret references get values and the
allowlist file it points at is generated (`python -m cluster allowlist from-whois`), and the
way it decides a request's source address must be the one docs/security.md describes.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
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
    ("wa-ingest", "redis-url"): "redis://redis:6379/0",
    ("wa-ingest", "rabbitmq-url"): "amqp://user:dummy@rabbitmq:5672/",
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
