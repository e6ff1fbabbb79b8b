"""ray-config/ and docker/ stay valid: the Serve config builds the app, YAML parses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cluster.serve_app import app_builder

ROOT = Path(__file__).resolve().parents[2]


def test_serve_config_validates_and_its_builder_builds_the_application() -> None:
    """serve.yaml is a valid ServeDeploySchema and app_builder(args) returns an Application."""
    config = ServeDeploySchema.model_validate(
        yaml.safe_load((ROOT / "ray-config/serve.yaml").read_text())
    )
    (app,) = config.applications
    assert app.import_path == "cluster.serve_app:app_builder"
    built = app_builder(dict(app.args))
    assert type(built).__name__ == "Application"
    names = {d.name for d in app.deployments}
    assert names == {"WebhookIngress", "ShardPool"}


@pytest.mark.parametrize("name", ["cluster.yaml", "kuberay-rayservice.yaml"])
def test_cluster_manifests_parse(name: str) -> None:
    """The launcher and KubeRay manifests are well-formed YAML naming the app builder."""
    text = (ROOT / "ray-config" / name).read_text()
    assert yaml.safe_load(text)
    if name.startswith("kuberay"):
        serve = yaml.safe_load(yaml.safe_load(text)["spec"]["serveConfigV2"])
        assert ServeDeploySchema.model_validate(serve).applications[0].name == "wa-ingest"


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (from the dev extras) finds nothing in docker/Dockerfile."""
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "docker/Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_is_valid() -> None:
    """`docker-compose config` accepts the full local stack."""
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker/compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        env={"WA_APP_SECRET": "x", "WA_VERIFY_TOKEN": "y", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
