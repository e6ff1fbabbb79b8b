"""The media side of the wiring (issue 12, docs/media.md): its config, derived once from the
settings, and the builders each process calls for its part.

- a media worker (actors/media_pool.py) builds the pipeline: the Graph client with the
  tenants' tokens, the media store (S3 under WA_S3_BUCKET, else the folder under
  WA_DATA_DIR), clamd when WA_CLAMD_URL is set;
- a shard actor builds its fetcher (actors/media_fetch.py) over the pool;
- an ingress replica builds the folder store's file server for `GET /media/...` (None with
  S3: consumers fetch presigned URLs from S3 itself).

Clients are built inside the process that uses them, never pickled.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from actors.media_fetch import MediaFetcher, MediaPolicy
from actors.media_limits import MediaLimits
from actors.media_metrics import RayMediaMetrics
from actors.media_pipeline import MediaPipeline
from actors.media_pool import RayMediaRunner
from actors.pool import MediaPoolSpec
from adapters.clamd import ClamdScanner
from adapters.graph import GraphClient
from adapters.media_local import LocalMediaStore
from adapters.media_s3 import S3MediaStore
from adapters.ports import GraphBudget, MediaFiles, MediaStore
from cluster.backends import InboxConfig
from cluster.limiter_wiring import LimiterConfig, graph_budget
from cluster.logging import configure_logging
from cluster.settings import Settings
from cluster.tenant_wiring import live_tenants, watched_directory
from models.tenant import Tenant, TenantDirectory


@dataclass(frozen=True, slots=True)
class S3MediaConfig:
    """Media in an S3 bucket (the archive's bucket, under `media/` and `quarantine/`)."""

    bucket: str
    endpoint_url: str | None
    public_url: str | None
    region: str
    access_key_id: str | None
    secret_access_key: SecretStr | None


@dataclass(frozen=True, slots=True)
class LocalMediaConfig:
    """Media in `<root>/media` and `<root>/quarantine`, served by the service itself."""

    root: Path
    public_url: str
    secret: SecretStr | None


@dataclass(frozen=True, slots=True)
class GraphConfig:
    """The Graph API client's settings."""

    base_url: str
    api_version: str
    allowed_hosts: tuple[str, ...]
    connect_timeout_s: float
    read_timeout_s: float
    download_timeout_s: float
    max_retries: int


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Everything media, for every process."""

    policy: MediaPolicy
    workers: int  # 0 when no tenant has an access token (nothing could be fetched)
    heavy_slots: int
    light_slots: int
    url_ttl_s: int
    limits: MediaLimits
    graph: GraphConfig
    store: S3MediaConfig | LocalMediaConfig
    clamd_url: str | None
    clamd_timeout_s: float
    work_dir: Path
    prefix: str = "wa"

    @classmethod
    def from_settings(
        cls, settings: Settings, data_dir: Path, tenants: tuple[Tenant, ...]
    ) -> MediaConfig:
        """Derive the media config (the settings were checked)."""
        store: S3MediaConfig | LocalMediaConfig
        if settings.s3_bucket:
            store = S3MediaConfig(
                bucket=settings.s3_bucket,
                endpoint_url=settings.s3_endpoint_url,
                public_url=settings.s3_public_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=settings.s3_secret_access_key,
            )
        else:
            store = LocalMediaConfig(
                root=data_dir,
                public_url=settings.public_url or _own_url(settings.host, settings.port),
                secret=settings.media_url_secret,
            )
        any_token = any(t.access_token is not None for t in tenants)
        return cls(
            policy=MediaPolicy(
                enabled=settings.media_enabled,
                types=settings.media_type_set(),
                wait_s=settings.media_wait_s,
                retry_base_s=settings.media_retry_base_ms / 1000,
                retry_max_delay_s=settings.media_retry_max_delay_s,
            ),
            workers=settings.media_workers if settings.media_enabled and any_token else 0,
            heavy_slots=settings.media_heavy_slots,
            light_slots=settings.media_light_slots,
            url_ttl_s=settings.media_url_ttl_s,
            limits=MediaLimits(
                max_bytes_image=settings.media_max_bytes_image,
                max_bytes_video=settings.media_max_bytes_video,
                max_bytes_audio=settings.media_max_bytes_audio,
                max_bytes_document=settings.media_max_bytes_document,
                max_bytes_sticker=settings.media_max_bytes_sticker,
                max_bytes_sticker_animated=settings.media_max_bytes_sticker_animated,
                max_pixels=settings.media_max_pixels,
                recompress_over_bytes=settings.media_recompress_over_bytes or None,
            ),
            graph=GraphConfig(
                base_url=settings.graph_api_url,
                api_version=settings.graph_api_version,
                allowed_hosts=settings.media_hosts(),
                connect_timeout_s=settings.graph_connect_timeout_s,
                read_timeout_s=settings.graph_read_timeout_s,
                download_timeout_s=settings.media_download_timeout_s,
                max_retries=settings.graph_max_retries,
            ),
            store=store,
            clamd_url=settings.clamd_url,
            clamd_timeout_s=settings.clamd_timeout_s,
            work_dir=data_dir / "media-work",
        )

    def secret_values(self) -> list[str]:
        """The media config's secrets, for the log redaction."""
        values = []
        if isinstance(self.store, S3MediaConfig) and self.store.secret_access_key is not None:
            values.append(self.store.secret_access_key.get_secret_value())
        if isinstance(self.store, LocalMediaConfig) and self.store.secret is not None:
            values.append(self.store.secret.get_secret_value())
        return values

    def describe(self) -> str:
        """The store and pool, for the start-up log."""
        where = (
            f"s3:{self.store.bucket}"
            if isinstance(self.store, S3MediaConfig)
            else f"folder:{self.store.root}"
        )
        if not self.policy.enabled:
            return "off"
        return f"{where}, {self.workers} worker(s)" + (", clamd" if self.clamd_url else "")


def _own_url(host: str, port: int) -> str:
    """The service's URL on this machine (a wildcard bind reached through loopback)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 -- mapped away
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def graph_client(
    graph: GraphConfig, tenants: TenantDirectory, budget: GraphBudget | None = None
) -> GraphClient:
    """A Graph API client with the tenants' tokens (one per process that calls it), read
    from the live directory at each call: a rotated token is used from the next reload."""

    def token_for(tenant_id: str) -> str | None:
        tenant = tenants.get(tenant_id)
        token = tenant.access_token if tenant is not None else None
        return token.get_secret_value() if token is not None else None

    return GraphClient(
        token_for,
        base_url=graph.base_url,
        api_version=graph.api_version,
        allowed_hosts=graph.allowed_hosts,
        connect_timeout_s=graph.connect_timeout_s,
        read_timeout_s=graph.read_timeout_s,
        download_timeout_s=graph.download_timeout_s,
        max_retries=graph.max_retries,
        budget=budget,
    )


def build_media_store(config: MediaConfig) -> MediaStore:
    """The media store (the folder one may create its URL secret file: start-up only)."""
    store = config.store
    if isinstance(store, S3MediaConfig):
        secret = store.secret_access_key
        return S3MediaStore(
            store.bucket,
            endpoint_url=store.endpoint_url,
            region=store.region,
            access_key_id=store.access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            public_url=store.public_url,
        )
    return _local_store(store)


def _local_store(store: LocalMediaConfig) -> LocalMediaStore:
    secret = store.secret.get_secret_value().encode() if store.secret is not None else None
    return LocalMediaStore(store.root, public_url=store.public_url, secret=secret)


def media_files(config: MediaConfig) -> MediaFiles | None:
    """What the ingress serves `GET /media/...` from: the folder store, or None (S3)."""
    if isinstance(config.store, LocalMediaConfig):
        return _local_store(config.store)
    return None


def build_pipeline(
    config: MediaConfig,
    tenants: tuple[Tenant, ...],
    log_level: str,
    secrets: list[str],
    registry: tuple[InboxConfig, float] | None = None,
    limiter: LimiterConfig | None = None,
) -> MediaPipeline:
    """A media worker's pipeline and its clients (called inside the worker); `registry`
    (the inbox config and the reload period): the tokens follow the tenant registry;
    `limiter`: its Graph calls within each tenant's budget (cluster/limiter_wiring.py)."""
    configure_logging(log_level, secrets)
    directory = (
        watched_directory(registry[0], tenants, registry[1], "media")
        if registry is not None
        else TenantDirectory(tenants)
    )
    source = graph_client(config.graph, directory, graph_budget(limiter, lambda: directory.ids))
    scanner = (
        ClamdScanner(config.clamd_url, scan_timeout_s=config.clamd_timeout_s)
        if config.clamd_url
        else None
    )
    return MediaPipeline(
        source,
        build_media_store(config),
        work_dir=config.work_dir,
        scanner=scanner,
        limits=config.limits,
        url_ttl_s=config.url_ttl_s,
    )


def build_fetcher(
    config: MediaConfig,
    tenants: tuple[Tenant, ...],
    registry: tuple[InboxConfig, float] | None = None,
) -> MediaFetcher | None:
    """A shard's media fetcher over the pool (None: media off, events without files);
    with `registry`, whether a tenant has a token is read from the shard's live directory
    (cluster/tenant_wiring.py live_tenants: the one the shard actor runs)."""
    if not config.policy.enabled:
        return None
    directory = (
        live_tenants(registry[0], tenants, registry[1], "shard")[0]
        if registry is not None
        else TenantDirectory(tenants)
    )

    def has_token(tenant_id: str) -> bool:
        tenant = directory.get(tenant_id)
        return tenant is not None and tenant.access_token is not None

    runner = RayMediaRunner(max(config.workers, 1), config.prefix)
    return MediaFetcher(runner, config.policy, metrics=RayMediaMetrics(), has_token=has_token)


def pool_spec(
    config: MediaConfig,
    tenants: tuple[Tenant, ...],
    log_level: str,
    secrets: list[str],
    registry: tuple[InboxConfig, float] | None = None,
    limiter: LimiterConfig | None = None,
) -> MediaPoolSpec:
    """What the shard pool starts: the workers (maybe none) and each shard's fetcher;
    `registry` (the inbox config, the reload period): tokens follow the tenant registry."""
    return MediaPoolSpec(
        workers=config.workers,
        heavy_slots=config.heavy_slots,
        light_slots=config.light_slots,
        pipeline=functools.partial(
            build_pipeline, config, tenants, log_level, secrets, registry, limiter
        ),
        fetcher=functools.partial(build_fetcher, config, tenants, registry),
    )
