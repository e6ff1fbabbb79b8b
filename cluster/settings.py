"""Settings from the environment (prefix `WA_`), built once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import orjson
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from cluster.placement import (
    IngressScaling,
    Placement,
    RolePlacement,
    parse_labels,
    parse_resources,
)
from cluster.queue_spec import parse_queues
from ingress.client_ip import IpNetwork, parse_networks
from models.tenant import Tenant, TenantDirectory, TenantsFile

DEV_APP_SECRET = "dev-app-secret"  # noqa: S105 -- documented development default, embedded profile only
DEV_VERIFY_TOKEN = "dev-verify-token"  # noqa: S105 -- same
MAX_JSON_DEPTH = 190
"""The highest WA_MAX_JSON_DEPTH: every item of a body within it can be stored and read back."""


class SettingsError(ValueError):
    """The configuration cannot be used; the message says which variable to fix."""


class Settings(BaseSettings):
    """Every knob of the service. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="WA_", extra="ignore", frozen=True)

    profile: Literal["embedded", "production"] = "embedded"
    host: str = "127.0.0.1"
    port: int = 8000
    tenant_id: str = "default"
    app_secret: SecretStr | None = None
    app_secret_previous: SecretStr | None = None
    verify_token: SecretStr | None = None
    access_token: SecretStr | None = None
    tenants_file: Path | None = None
    redis_url: str | None = None
    redis_prefix: str = "wa:"
    # Redis durability (issue 9); docs/redis.md explains each.
    redis_durability: Literal["checked", "unchecked"] = "checked"
    redis_waitaof: str = "off"  # off | local | replicas:N | local+replicas:N
    redis_waitaof_timeout_ms: int = 2000
    rabbitmq_url: str | None = None
    rabbitmq_exchange: str = "whatsapp.events"
    rabbitmq_confirm_timeout_s: float = 30.0
    # Dead letters and consumer queues (issue 11; docs/reliability.md "Consumer queues").
    rabbitmq_dead_queue: bool = True  # the durable queue `<exchange>.dead`, bound with `#`
    rabbitmq_queues: str = ""  # queue=pattern,pattern;queue=pattern (cluster/queue_spec.py)
    rabbitmq_delivery_limit: int = 20  # deliveries before a consumer queue dead-letters
    data_dir: Path = Path("var")
    shards: int = 4
    ingress_replicas: int = 1
    # Serve autoscaling of the ingress (docs/scaling.md): 0 keeps WA_INGRESS_REPLICAS
    # fixed; above it, replicas scale between WA_INGRESS_REPLICAS and this, aiming at
    # WA_INGRESS_TARGET_ONGOING requests in flight per replica (the target measured in
    # docs/scaling.md: ~60 % of one replica's core at the latency it then has).
    ingress_max_replicas: int = 0
    ingress_target_ongoing: float = 12.0
    ingress_upscale_delay_s: float = 30.0
    ingress_downscale_delay_s: float = 600.0
    ingress_look_back_s: float = 30.0  # the window Serve averages the in-flight count over
    # Placement on a cluster of several nodes (cluster/placement.py, docs/scaling.md):
    # custom resources per actor (`name=amount,...`) and node labels (`key=value,...`)
    # per role; `spread`: Ray's SPREAD strategy for the shard and media actors.
    placement: Literal["default", "spread"] = "default"
    shard_resources: str = ""
    shard_labels: str = ""
    media_resources: str = ""
    media_labels: str = ""
    ingress_resources: str = ""
    ingress_labels: str = ""
    pool_resources: str = ""  # the shard pool: its node's death re-creates every shard
    pool_labels: str = ""
    ingress_max_per_node: int = 0  # 0: no limit; 1: a replica per node
    # Serve's HAProxy on every node with a replica (Serve's default), or on the head only
    # (a local cluster of several nodes on one machine: their HAProxies would share ports).
    proxy_location: Literal["EveryNode", "HeadOnly"] = "EveryNode"
    max_body_bytes: int = 4 * 1024 * 1024
    append_linger_ms: float = 1.0
    append_max_items: int = 512
    # The longest a webhook waits for its rate-limit count and its inbox append together
    # before it is answered 503 (Meta retries): a Redis that is down or hung must not
    # hold Meta's requests (docs/reliability.md "Degradation").
    ack_timeout_ms: int = 1500
    shard_batch_size: int = 256
    shard_block_ms: int = 100
    # After a partial batch a shard waits this long before reading again so that the next
    # batch is larger: every batch costs four store round trips and one confirm wait
    # whatever its size. Measured on 2 cores at ~1,150 req/s: 1-3 item batches cost
    # ~590 us of shard CPU per event. It adds at most this much to ack->published latency.
    shard_linger_ms: float = 20.0
    shard_max_backoff_s: float = 5.0
    # Conversations (issue 10; docs/conversations.md). Records are kept until deleted
    # unless a retention is set (0: never expire); message records (status order, reply
    # threads) for the message-state TTL, the dedup window by default.
    conversation_retention_s: int = 0
    message_state_ttl_s: int = 7 * 24 * 3600
    # Records cached per shard: bytes per resident record in docs/conversations.md.
    conversation_cache: int = 20_000
    conversation_idle_s: float = 3600.0
    reorder_window_ms: float = 1000.0
    reorder_max_held: int = 10_000
    # An item that fails (a step raising on it, the broker refusing its event) is tried
    # this many times, the batch waiting base * 2^(n-1) ms (capped, jittered) between
    # tries, then dead-lettered (docs/reliability.md): at most ~12.7 s per poison item.
    max_attempts: int = 8
    retry_base_ms: float = 100.0
    retry_max_delay_s: float = 10.0
    shard_max_batch_bytes: int = 4 * 1024 * 1024
    shard_stall_after_s: float = 60.0
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    ray_metrics_port: int | None = None
    ray_dashboard: bool = True
    ray_dashboard_port: int = 8265
    # `python -m cluster run`'s whole stop, signal to exit: the drain, then ending what is
    # left (cluster/supervisor.py). Give the container runtime more (docker stop -t).
    shutdown_timeout_s: float = 30.0
    log_level: str = "INFO"
    # Security (issue 5); docs/security.md explains each.
    allowlist_enabled: bool | None = None  # None: on in production, off in embedded
    allowed_cidrs: str = ""
    allowlist_file: Path | None = None
    # Empty: no proxy in front replaces X-Forwarded-For, so it is never read. Serve's
    # HAProxy passes a client's header through unchanged from loopback: listing loopback
    # declares a front proxy that replaced it (docs/security.md).
    trusted_proxies: str = ""
    dedup_window_s: int = 7 * 24 * 3600
    max_item_age_s: int = 7 * 24 * 3600
    rate_limit_window_s: int = 1
    rate_limit_per_ip: int = 5_000
    rate_limit_per_tenant: int = 20_000
    rate_limit_linger_ms: float = 1.0
    max_json_depth: int = 32
    max_json_array: int = 10_000
    # Amplification bounds (docs/security.md has the measurements behind each default).
    max_json_nodes: int = 500_000
    max_items_per_delivery: int = 5_000
    max_item_bytes: int = 5 * 1024 * 1024
    max_stored_ratio: int = 4
    max_unverified_bytes: int = 64 * 1024 * 1024  # per replica: 16 bodies at the cap
    body_timeout_s: float = 10.0
    admin_token: SecretStr | None = None
    # Raw-delivery archive (issue 11, docs/archive.md): S3 when WA_S3_BUCKET is set, else a
    # folder under WA_DATA_DIR. The S3 names are the media store's too (issue 12). No
    # access key: boto3's own credential chain (environment, instance profile).
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    archive_retention_s: int = 7 * 24 * 3600  # Meta's retry horizon
    # Raw bodies waiting longer than this for the archive store make /readyz say
    # "degraded" (still ready: the ingress stores, the shards publish).
    archive_stall_after_s: float = 60.0
    archive_sweep_every_s: float = 3600.0
    # Bodies the archiver takes per step, written concurrently: at most this many bodies
    # (each up to WA_MAX_BODY_BYTES) in its memory at once.
    archive_batch: int = 16
    archive_poll_ms: float = 500.0  # the archiver's wait when nothing is pending
    # Media (issue 12, docs/media.md): each media message's file is fetched through the
    # Graph API, checked, sanitized and stored (S3 under WA_S3_BUCKET, else WA_DATA_DIR)
    # before its event is published; its conversation waits at most WA_MEDIA_WAIT_S.
    media_enabled: bool = True
    media_types: str = "image,video,audio,document,sticker"  # message types fetched
    media_wait_s: float = 30.0
    media_retry_base_ms: float = 500.0
    media_retry_max_delay_s: float = 5.0
    media_workers: int = 1  # media pool actors (none while no tenant has an access token)
    media_heavy_slots: int = 2  # video and documents at once, per worker
    media_light_slots: int = 8  # images, audio and stickers at once, per worker
    media_url_ttl_s: int = 3600  # presigned / signed URL lifetime, 1 s .. 7 days
    media_url_secret: SecretStr | None = None  # the folder store's URL key (16+ chars)
    public_url: str | None = None  # the service as consumers reach it (folder store URLs)
    s3_public_url: str | None = None  # S3 endpoint for presigned URLs (default: endpoint)
    media_allowed_hosts: str = "*.fbsbx.com,*.fbcdn.net"
    media_max_bytes_image: int = 5 * 1024 * 1024
    media_max_bytes_video: int = 16 * 1024 * 1024
    media_max_bytes_audio: int = 16 * 1024 * 1024
    media_max_bytes_document: int = 100 * 1024 * 1024
    media_max_bytes_sticker: int = 100 * 1024
    media_max_bytes_sticker_animated: int = 500 * 1024
    media_max_pixels: int = 40_000_000
    media_recompress_over_bytes: int = 2 * 1024 * 1024  # 0: never re-encode to shrink
    media_download_timeout_s: float = 300.0
    clamd_url: str | None = None  # tcp://host:3310 or unix:///run/clamav/clamd.ctl
    clamd_timeout_s: float = 60.0
    graph_api_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v23.0"
    graph_connect_timeout_s: float = 5.0
    graph_read_timeout_s: float = 30.0
    graph_max_retries: int = 3
    # Business accounts and templates (issue 12 point 6, docs/accounts.md): refreshed from
    # the Graph API for tenants with a token, kept current between refreshes by webhooks.
    account_refresh_s: float = 3600.0
    account_refresh_max_backoff_s: float = 900.0
    account_refresh_concurrency: int = 4
    account_template_page_size: int = 100
    account_hook_flush_s: float = 1.0
    # How often every process polls the tenant registry's version (docs/tenants.md): a
    # change reaches every ingress replica and shard within this (the issue asks 5 s).
    tenant_reload_s: float = 1.0
    # Per-tenant rate limiters (issue 13; docs/tenants.md "Rate limits and isolation"):
    # shards lease publish tokens `limiter_lease_s` of a tenant's rate at a time and hold
    # at most `limiter_max_held` entries for tokens before they stop reading.
    limiter_enabled: bool = True
    limiter_lease_s: float = 0.2
    limiter_max_held: int = 20_000
    limiter_burst_s: float = 1.0
    limiter_refresh_s: float = 5.0
    limiter_timeout_s: float = 2.0

    def placement_spec(self) -> Placement:
        """Where the actors and replicas run (cluster/placement.py), parsed and checked."""
        try:
            return Placement(
                strategy=self.placement,
                shard=RolePlacement(
                    resources=parse_resources("WA_SHARD_RESOURCES", self.shard_resources),
                    labels=parse_labels("WA_SHARD_LABELS", self.shard_labels),
                ),
                media=RolePlacement(
                    resources=parse_resources("WA_MEDIA_RESOURCES", self.media_resources),
                    labels=parse_labels("WA_MEDIA_LABELS", self.media_labels),
                ),
                ingress=RolePlacement(
                    resources=parse_resources("WA_INGRESS_RESOURCES", self.ingress_resources),
                    labels=parse_labels("WA_INGRESS_LABELS", self.ingress_labels),
                ),
                pool=RolePlacement(
                    resources=parse_resources("WA_POOL_RESOURCES", self.pool_resources),
                    labels=parse_labels("WA_POOL_LABELS", self.pool_labels),
                ),
                ingress_max_per_node=self.ingress_max_per_node,
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc

    def ingress_scaling(self) -> IngressScaling:
        """The ingress replicas: a fixed count, or Serve's autoscaling bounds and target."""
        if self.ingress_replicas < 1 or self.ingress_max_per_node < 0:
            raise SettingsError("WA_INGRESS_REPLICAS must be >= 1, WA_INGRESS_MAX_PER_NODE >= 0")
        if self.ingress_max_replicas and self.ingress_max_replicas < self.ingress_replicas:
            raise SettingsError("WA_INGRESS_MAX_REPLICAS must be 0 or >= WA_INGRESS_REPLICAS")
        if self.ingress_target_ongoing <= 0:
            raise SettingsError("WA_INGRESS_TARGET_ONGOING must be > 0")
        if min(self.ingress_upscale_delay_s, self.ingress_downscale_delay_s) < 0:
            raise SettingsError("WA_INGRESS_UPSCALE_DELAY_S and _DOWNSCALE_DELAY_S must be >= 0")
        if self.ingress_look_back_s <= 0:
            raise SettingsError("WA_INGRESS_LOOK_BACK_S must be > 0")
        return IngressScaling(
            replicas=self.ingress_replicas,
            max_replicas=self.ingress_max_replicas,
            target_ongoing=self.ingress_target_ongoing,
            upscale_delay_s=self.ingress_upscale_delay_s,
            downscale_delay_s=self.ingress_downscale_delay_s,
            look_back_s=self.ingress_look_back_s,
        )

    def allowlist_on(self) -> bool:
        """Whether the source-IP allowlist is enforced (default: production only)."""
        if self.allowlist_enabled is not None:
            return self.allowlist_enabled
        return self.profile == "production"

    def allowed_networks(self) -> tuple[IpNetwork, ...]:
        """The allowlist: WA_ALLOWED_CIDRS plus the lines of WA_ALLOWLIST_FILE, parsed."""
        lines = [self.allowed_cidrs]
        if self.allowlist_file is not None:
            try:
                lines.append(self.allowlist_file.read_text(encoding="utf-8"))
            except OSError as exc:
                raise SettingsError(f"WA_ALLOWLIST_FILE {self.allowlist_file}: {exc}") from exc
        return _networks("WA_ALLOWED_CIDRS / WA_ALLOWLIST_FILE", "\n".join(lines).splitlines())

    def trusted_networks(self) -> tuple[IpNetwork, ...]:
        """WA_TRUSTED_PROXIES, parsed (empty by default: X-Forwarded-For is not read)."""
        return _networks("WA_TRUSTED_PROXIES", [self.trusted_proxies])

    def tenants(self) -> list[Tenant]:
        """The default tenant from WA_APP_SECRET/... plus those of WA_TENANTS_FILE.

        Fails closed: with no tenant at all, the production profile refuses to start; the
        embedded profile uses the documented development secret so `make run` just works.
        """
        tenants: list[Tenant] = []
        if self.app_secret is not None:
            secrets = [self.app_secret]
            if self.app_secret_previous is not None:
                secrets.append(self.app_secret_previous)
            tenants.append(
                Tenant(
                    id=self.tenant_id,
                    app_secrets=tuple(secrets),
                    verify_token=self.verify_token,
                    access_token=self.access_token,
                    default=True,
                )
            )
        if self.tenants_file is not None:
            try:
                parsed = TenantsFile.model_validate(orjson.loads(self.tenants_file.read_bytes()))
            except (OSError, ValueError) as exc:
                raise SettingsError(f"WA_TENANTS_FILE {self.tenants_file}: {exc}") from exc
            tenants.extend(parsed.tenants)
        if not tenants:
            if self.profile == "production":
                raise SettingsError("production needs WA_APP_SECRET or WA_TENANTS_FILE")
            tenants.append(
                Tenant(
                    id=self.tenant_id,
                    app_secrets=(SecretStr(DEV_APP_SECRET),),
                    verify_token=SecretStr(DEV_VERIFY_TOKEN),
                    access_token=self.access_token,
                    default=True,
                )
            )
        return tenants

    def check(self) -> None:
        """Fail closed on settings that cannot work together."""
        if self.shards < 1:
            raise SettingsError("WA_SHARDS must be >= 1")
        if self.profile == "production" and not (self.redis_url and self.rabbitmq_url):
            raise SettingsError("production needs WA_REDIS_URL and WA_RABBITMQ_URL")
        tenants = self.tenants()
        self._check_security(tenants)
        self._check_redis()
        self.consumer_queues()
        self._check_conversations()
        self._check_archive()
        self._check_media()
        if not 0.05 <= self.tenant_reload_s <= 5:
            raise SettingsError("WA_TENANT_RELOAD_S must be between 0.05 and 5")
        self._check_limiter()
        self.placement_spec()
        self.ingress_scaling()

    def _check_limiter(self) -> None:
        if not 0.01 <= self.limiter_lease_s <= 10 or not 0.01 <= self.limiter_burst_s <= 60:
            raise SettingsError(
                "WA_LIMITER_LEASE_S must be between 0.01 and 10, WA_LIMITER_BURST_S 0.01 .. 60"
            )
        if self.limiter_max_held < 1 or self.limiter_refresh_s <= 0 or self.limiter_timeout_s <= 0:
            raise SettingsError(
                "WA_LIMITER_MAX_HELD must be >= 1, WA_LIMITER_REFRESH_S and "
                "WA_LIMITER_TIMEOUT_S > 0"
            )

    def media_type_set(self) -> tuple[str, ...]:
        """WA_MEDIA_TYPES, parsed and checked."""
        known = ("image", "video", "audio", "document", "sticker")
        types = tuple(t.strip() for t in self.media_types.split(",") if t.strip())
        unknown = [t for t in types if t not in known]
        if unknown:
            raise SettingsError(f"WA_MEDIA_TYPES: unknown {unknown}; use {','.join(known)}")
        return types

    def media_hosts(self) -> tuple[str, ...]:
        """WA_MEDIA_ALLOWED_HOSTS, parsed."""
        return tuple(h.strip() for h in self.media_allowed_hosts.split(",") if h.strip())

    def _check_media(self) -> None:
        self.media_type_set()
        if self.media_wait_s <= 0 or self.media_retry_base_ms <= 0:
            raise SettingsError("WA_MEDIA_WAIT_S and WA_MEDIA_RETRY_BASE_MS must be > 0")
        if self.media_workers < 0 or self.media_heavy_slots < 1 or self.media_light_slots < 1:
            raise SettingsError(
                "WA_MEDIA_WORKERS must be >= 0, WA_MEDIA_HEAVY_SLOTS and _LIGHT_SLOTS >= 1"
            )
        if not 1 <= self.media_url_ttl_s <= 7 * 24 * 3600:
            raise SettingsError("WA_MEDIA_URL_TTL_S must be between 1 and 604800 (7 days)")
        secret = self.media_url_secret
        if secret is not None and len(secret.get_secret_value()) < 16:
            raise SettingsError("WA_MEDIA_URL_SECRET must be 16+ characters")
        if not self.media_hosts():
            raise SettingsError("WA_MEDIA_ALLOWED_HOSTS must name at least one host")
        if self.media_max_pixels < 1 or self.media_max_pixels > 89_000_000:
            raise SettingsError("WA_MEDIA_MAX_PIXELS must be between 1 and 89000000")
        if self.account_refresh_s < 60 or self.account_refresh_concurrency < 1:
            raise SettingsError(
                "WA_ACCOUNT_REFRESH_S must be >= 60, WA_ACCOUNT_REFRESH_CONCURRENCY >= 1"
            )
        if not 1 <= self.account_template_page_size <= 1000 or self.account_hook_flush_s <= 0:
            raise SettingsError(
                "WA_ACCOUNT_TEMPLATE_PAGE_SIZE must be 1..1000, WA_ACCOUNT_HOOK_FLUSH_S > 0"
            )

    def _check_archive(self) -> None:
        if self.archive_retention_s < 1 or self.archive_stall_after_s <= 0:
            raise SettingsError("WA_ARCHIVE_RETENTION_S must be >= 1, WA_ARCHIVE_STALL_AFTER_S > 0")
        if self.archive_sweep_every_s <= 0 or self.archive_poll_ms <= 0 or self.archive_batch < 1:
            raise SettingsError(
                "WA_ARCHIVE_SWEEP_EVERY_S and WA_ARCHIVE_POLL_MS must be > 0, WA_ARCHIVE_BATCH >= 1"
            )
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise SettingsError(
                "set both WA_S3_ACCESS_KEY_ID and WA_S3_SECRET_ACCESS_KEY, or neither"
            )
        if not 3 <= self.shutdown_timeout_s <= 3600:
            raise SettingsError("WA_SHUTDOWN_TIMEOUT_S must be between 3 and 3600")

    def _check_conversations(self) -> None:
        if self.conversation_retention_s < 0 or self.message_state_ttl_s < 1:
            raise SettingsError(
                "WA_CONVERSATION_RETENTION_S must be >= 0 and WA_MESSAGE_STATE_TTL_S >= 1"
            )
        if self.conversation_cache < 1 or self.conversation_idle_s <= 0:
            raise SettingsError("WA_CONVERSATION_CACHE and WA_CONVERSATION_IDLE_S must be > 0")
        if (
            self.conversation_retention_s
            and self.conversation_idle_s >= self.conversation_retention_s
        ):
            # A shard would keep numbering from a cached record the store has expired.
            raise SettingsError(
                "WA_CONVERSATION_IDLE_S must be shorter than WA_CONVERSATION_RETENTION_S"
            )
        if not 0 <= self.reorder_window_ms <= 60_000 or self.reorder_max_held < 1:
            raise SettingsError(
                "WA_REORDER_WINDOW_MS must be between 0 and 60000, WA_REORDER_MAX_HELD >= 1"
            )

    def waitaof_counts(self) -> tuple[int, int]:
        """WA_REDIS_WAITAOF as (numlocal, numreplicas); (0, 0) for off."""
        text = self.redis_waitaof.replace(" ", "").lower()
        if text == "off":
            return 0, 0
        local = replicas = 0
        for part in text.split("+"):
            count = part.removeprefix("replicas:")
            if part == "local" and not local:
                local = 1
            elif count != part and count.isdigit() and int(count) > 0 and not replicas:
                replicas = int(count)
            else:
                raise SettingsError(
                    f"WA_REDIS_WAITAOF={self.redis_waitaof!r}: use off, local, replicas:N "
                    "or local+replicas:N"
                )
        return local, replicas

    def _check_redis(self) -> None:
        self.waitaof_counts()
        # Below the client's 10 s socket timeout, so WAITAOF answers before the socket gives up.
        if not 1 <= self.redis_waitaof_timeout_ms <= 5000:
            raise SettingsError("WA_REDIS_WAITAOF_TIMEOUT_MS must be between 1 and 5000")
        if not 50 <= self.ack_timeout_ms <= 10_000:
            raise SettingsError("WA_ACK_TIMEOUT_MS must be between 50 and 10000")

    def consumer_queues(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """WA_RABBITMQ_QUEUES parsed: each queue with its binding patterns."""
        if not 1 <= self.rabbitmq_delivery_limit <= 1000:
            raise SettingsError("WA_RABBITMQ_DELIVERY_LIMIT must be between 1 and 1000")
        exchange = self.rabbitmq_exchange
        try:
            queues = parse_queues(
                self.rabbitmq_queues, frozenset({f"{exchange}.dead", f"{exchange}.unrouted"})
            )
        except ValueError as exc:
            raise SettingsError(f"WA_RABBITMQ_QUEUES: {exc}") from exc
        if queues and not self.rabbitmq_url:
            raise SettingsError("WA_RABBITMQ_QUEUES needs WA_RABBITMQ_URL (queues are RabbitMQ's)")
        return queues

    def _check_security(self, tenants: list[Tenant]) -> None:
        allowed = self.allowed_networks()
        self.trusted_networks()
        if self.allowlist_on() and not allowed:
            raise SettingsError(
                "the allowlist is on (production default) but empty: set WA_ALLOWED_CIDRS or "
                "WA_ALLOWLIST_FILE (python -m cluster allowlist from-whois), or "
                "WA_ALLOWLIST_ENABLED=false"
            )
        if not 0 < self.max_item_age_s <= self.dedup_window_s:
            # A replay after its mark expired must then be older than the maximum age.
            raise SettingsError("WA_MAX_ITEM_AGE_S must be > 0 and <= WA_DEDUP_WINDOW_S")
        if min(self.rate_limit_per_ip, self.rate_limit_per_tenant, self.rate_limit_window_s) < 1:
            raise SettingsError("WA_RATE_LIMIT_* must be >= 1")
        self._check_bounds()
        try:
            directory = TenantDirectory(tenants)
        except ValueError as exc:
            raise SettingsError(f"tenants: {exc}") from exc
        try:
            directory.check_admin_token(self.admin_token)
        except ValueError as exc:
            raise SettingsError(f"WA_ADMIN_TOKEN: {exc}") from exc

    def _check_bounds(self) -> None:
        if self.max_unverified_bytes < self.max_body_bytes:
            # Else a body at the cap could never be read: every such delivery answered 503.
            raise SettingsError("WA_MAX_UNVERIFIED_BYTES must be >= WA_MAX_BODY_BYTES")
        if self.max_item_bytes < self.max_body_bytes + 64 * 1024:
            # One item may legitimately be a whole body (a history chunk) plus its envelope.
            raise SettingsError("WA_MAX_ITEM_BYTES must be >= WA_MAX_BODY_BYTES + 64 KiB")
        if not 1 <= self.max_json_depth <= MAX_JSON_DEPTH:
            # orjson serializes at most 255 levels, so a deeper accepted body could never
            # be stored (every append 503, Meta retrying it for 7 days); and pydantic's
            # JSON reader stops at 200, so an item stored deeper than that could never be
            # read back by its shard (its partition stopped). A body's items sit ~6 levels
            # down and an entry adds one: 190 keeps every accepted item readable.
            raise SettingsError(f"WA_MAX_JSON_DEPTH must be between 1 and {MAX_JSON_DEPTH}")
        if min(self.max_json_nodes, self.max_items_per_delivery, self.max_stored_ratio) < 1:
            raise SettingsError(
                "WA_MAX_JSON_NODES, WA_MAX_ITEMS_PER_DELIVERY, WA_MAX_STORED_RATIO must be >= 1"
            )
        if not 1 <= self.max_attempts <= 100:
            raise SettingsError("WA_MAX_ATTEMPTS must be between 1 and 100")
        if self.retry_base_ms < 0 or self.retry_max_delay_s < 0:
            raise SettingsError("WA_RETRY_BASE_MS and WA_RETRY_MAX_DELAY_S must be >= 0")


def _networks(variable: str, lines: list[str]) -> tuple[IpNetwork, ...]:
    try:
        return parse_networks(lines)
    except ValueError as exc:
        raise SettingsError(f"bad CIDR in {variable}: {exc}") from exc
