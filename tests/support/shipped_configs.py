"""The environment each shipped configuration gives the service, read from the files.

docker/compose.yaml and the KubeRay manifest run the image of docker/Dockerfile, so a
service's environment is the Dockerfile's ENV overlaid with the file's own variables;
`serve deploy ray-config/serve.yaml` builds the app from the cluster's environment (the
image's ENV plus the secrets an operator adds) and the file's `args`. Secrets are only
references in the files (`${WA_APP_SECRET:?...}`, secretKeyRef); tests supply values.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
FRONT_PROXY_CFG = ROOT / "docker" / "haproxy-front.cfg"
SERVE_YAML = ROOT / "ray-config" / "serve.yaml"
KUBERAY = ROOT / "ray-config" / "kuberay-rayservice.yaml"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error} (compose's syntax).
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def dockerfile_env(path: Path = DOCKERFILE) -> dict[str, str]:
    """Every `ENV K=V ...` of the Dockerfile's last stage (the image that runs; continuation
    lines joined), `$NAME` references expanded as Docker does (an earlier ENV of the stage,
    else this process's environment, which stands in for the base image's)."""
    instructions = re.sub(r"\\\n", " ", path.read_text()).splitlines()
    starts = [i for i, line in enumerate(instructions) if line.strip().upper().startswith("FROM ")]
    env: dict[str, str] = {}
    for line in instructions[starts[-1] if starts else 0 :]:
        if line.strip().upper().startswith("ENV "):
            for token in shlex.split(line.strip()[4:]):
                name, _, value = token.partition("=")
                env[name] = re.sub(
                    r"\$\{?(\w+)\}?",
                    lambda m: env.get(m[1], os.environ.get(m[1], "")),
                    value,
                )
    return env


def interpolate(value: str, supplied: Mapping[str, str]) -> str:
    """Compose's variable substitution of one value; KeyError for a missing required one."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in supplied and (supplied[name] != "" or op in (None, "-", "?"))
        if present:
            return supplied[name]
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""

    return _VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def compose() -> dict[str, Any]:
    """docker/compose.yaml, parsed."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_env(supplied: Mapping[str, str], service: str = "wa-ingest") -> dict[str, str]:
    """The service container's environment: the image's ENV, then the compose file's."""
    declared = compose()["services"][service].get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) for item in declared)
    env = dockerfile_env()
    env.update({k: interpolate(str(v), supplied) for k, v in declared.items()})
    return env


def rayservice() -> dict[str, Any]:
    """The RayService document of the KubeRay manifest."""
    (document,) = [
        d for d in yaml.safe_load_all(KUBERAY.read_text()) if d and d["kind"] == "RayService"
    ]
    found: dict[str, Any] = document
    return found


def kuberay_containers() -> dict[str, dict[str, Any]]:
    """The Ray containers of the RayService (head and every worker group), by name."""
    cluster = rayservice()["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return {c["name"]: c for pod in pods for c in pod["template"]["spec"]["containers"]}


def kuberay_pod_specs() -> list[dict[str, Any]]:
    """The pod specs of the head and of every worker group."""
    cluster = rayservice()["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [pod["template"]["spec"] for pod in pods]


def kuberay_env(container: str, secrets: Mapping[tuple[str, str], str]) -> dict[str, str]:
    """A Ray container's environment: the image's ENV, then its env list.

    `secrets` maps (Secret name, key) to a value; a secretKeyRef not in it is a KeyError.
    """
    env = dockerfile_env()
    for item in kuberay_containers()[container].get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
    return env


def serve_config(text: str) -> dict[str, Any]:
    """A Serve config (serve.yaml, or a RayService's serveConfigV2), parsed."""
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def serve_yaml() -> dict[str, Any]:
    """ray-config/serve.yaml, parsed."""
    return serve_config(SERVE_YAML.read_text())


def app_args(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `args` of the config's one application (Settings fields, lower case)."""
    (app,) = config["applications"]
    args: dict[str, Any] = dict(app.get("args") or {})
    return args


def as_env(args: Mapping[str, Any]) -> dict[str, str]:
    """Settings fields as the WA_* variables `python -m cluster run` reads."""
    return {f"WA_{name.upper()}": str(value) for name, value in args.items()}
