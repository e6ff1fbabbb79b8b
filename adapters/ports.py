"""The ports: one small interface per kind of infrastructure, each with two adapters."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from models.account import AccountSnapshot
from models.account_change import AccountChange
from models.archive import RawDelivery
from models.conversation import ConversationRecord, MessageRecord
from models.dead_letter import DeadLetter
from models.event import NormalizedEvent
from models.inbox import InboxItem, StoredItem
from models.inbox_layout import InboxLayout, Move
from models.tenant import RoutingRule, Tenant

Delivery = tuple[str, Sequence[InboxItem]] | tuple[str, Sequence[InboxItem], RawDelivery]
"""(dedup key of the delivery, its items[, its raw body for the archive])."""


def raw_of(delivery: Delivery) -> RawDelivery | None:
    """The raw delivery an append carries for the archive, None when it carries none."""
    return delivery[2] if len(delivery) == 3 else None


@dataclass(frozen=True, slots=True)
class InboxDurability:
    """What the store itself says about keeping an acknowledged append, read, not assumed.

    `unsafe`: the store can lose or evict acknowledged data (AOF off, an eviction policy);
    the production profile refuses to start on it unless WA_REDIS_DURABILITY=unchecked.
    `unusable`: the configuration cannot work on this store at all (every append or commit
    would fail), refused in every profile. `advice`: weaker than it could be, not refused.
    Each entry is one sentence naming the setting to change.
    """

    store: str  # kind and version, e.g. "redis 7.0.15"
    settings: tuple[tuple[str, str], ...]  # what was read, e.g. ("appendonly", "yes")
    unsafe: tuple[str, ...] = ()
    unusable: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InboxStats:
    """The store's dedup state and memory, read without scanning keys (a gauge's source).

    `expiring_keys` counts the dedup marks and whatever else of the database expires
    (Redis: INFO keyspace's `expires`, so message records, conversation records with a
    retention, and rate-limit windows too: an upper bound on the marks); docs/redis.md has
    the bytes per mark to size with.
    """

    expiring_keys: int
    used_memory_bytes: int
    max_memory_bytes: int | None  # None: no limit configured


@dataclass(frozen=True, slots=True)
class StateWrite:
    """The conversation state a commit stores with its entries' acknowledgement.

    `conversations`: the new record of every conversation the batch changed (its
    `last_sequence` included), by conversation id. `messages`: message records by
    `message_key(conversation_id, message_id)`, kept for the message-state TTL.
    """

    conversations: Mapping[str, ConversationRecord] = field(default_factory=dict)
    messages: Mapping[str, MessageRecord] = field(default_factory=dict)


class Inbox(Protocol):
    """The durable, partitioned inbox plus the shards' per-conversation state.

    `append` returns only once the items are durable; the ingress answers 200 after it.
    Each partition has one reader; `read` first returns entries that were read before but
    never committed (a crashed reader's batch), then new ones, in append order.
    `commit` acknowledges entries and stores the conversations' new records (their last
    sequence included) and message records in one atomic step, so a redelivered entry
    gets the same sequence it was published with and no state change is lost or applied
    twice. Entries may be committed in any order (a shard holds some back in its reorder
    window while it commits later ones); each is acknowledged by its id.

    Deduplication lives here, not in a port of its own, because each mark must be written
    in the same atomic step as the data it guards: a delivery's mark with its items
    (`append_deliveries`), an item's mark with the commit that published it (`commit(seen=)`).
    Marks expire after the adapter's window (Meta's 7-day retry horizon by default).

    A batch's order (`record_order`, `recorded_order`, `entries`): a shard may publish a
    batch in an order other than entry order (its reorder window releases messages by
    Meta's timestamp and lets statuses pass held ones). Were it to crash after publishing
    and before committing, a restart reading in entry order would publish other events
    (other sequences) than the ones already out. So it records the batch's entry ids
    before publishing, and a restarted shard first takes exactly those entries, in that
    order; the commit clears the record in its atomic step.

    Fencing (`claim`): each incarnation of a partition's shard claims the partition before
    its first read, which bumps the partition's stored epoch. From then on the reads,
    recorded orders and commits of an inbox object that claimed an older epoch raise
    `Fenced`, each checked in the same atomic step as the read or write it guards: when
    an owner dies, Ray may start the replacing shard before the old process is gone, and
    the old one must neither take entries the new one would then never see (a read) nor
    store state over the new one's (a late commit could store a lower sequence). A
    partition nobody claimed through this object is not fenced (tools, tests).
    """

    async def claim(self, partition: int) -> int:
        """Start a new incarnation of the partition's reader: bump the partition's epoch
        and return it. This object's later reads of the partition start again from its
        uncommitted entries (a new incarnation holds nothing)."""
        ...

    async def append_deliveries(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Per delivery, atomically: unless its key is marked, append its items and mark it.

        Returns, per delivery, True when stored now, False when it was a duplicate (nothing
        appended). Nothing is marked unless its items are durable, so a failed append is
        retried by Meta, never swallowed as a duplicate.
        """
        ...

    async def read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        """Up to `count` uncommitted entries of a partition, oldest first; waits up to block_ms."""
        ...

    async def commit(
        self,
        partition: int,
        entry_ids: Sequence[str],
        state: StateWrite,
        seen: Collection[str] = (),
    ) -> None:
        """Acknowledge entries, store the conversation and message records, mark item keys
        seen and clear the partition's recorded order, atomically.

        Any commit of the partition clears its record, whichever entries it acknowledges:
        the shard commits the recorded batch before any other one.
        """
        ...

    async def record_order(self, partition: int, entry_ids: Sequence[str]) -> None:
        """Store, durably, the ordered entry ids of the batch about to be published for
        the partition, replacing any recorded before (one per partition).

        Returns only once the record is as durable as an append, and succeeds where a
        commit does (Redis at its memory limit included): the shard records before it
        publishes, so a record that could fail there would stop the drain.
        """
        ...

    async def recorded_order(self, partition: int) -> list[str]:
        """The entry ids `record_order` stored for the partition, in order; [] when none
        (never recorded, or cleared by a commit since)."""
        ...

    async def entries(self, partition: int, entry_ids: Sequence[str]) -> list[StoredItem]:
        """The partition's uncommitted entries with these ids, in the order given, each
        with `deliveries=2` (a recorded batch is a redelivery by definition); an id
        committed since is absent. Ids are the partition's own, as `read` gave them (Redis
        stream ids repeat across partitions).

        Changes nothing `read` hands out later: a new reader still re-reads every
        uncommitted entry, these included, in entry order (the caller skips the ids it
        took here).
        """
        ...

    async def seen(self, keys: Collection[str]) -> set[str]:
        """The item keys marked by a commit within the window."""
        ...

    async def conversations(
        self, conversation_ids: Collection[str]
    ) -> dict[str, ConversationRecord]:
        """The stored record of each conversation (absent: never seen). A conversation
        that only has a sequence stored by a version before issue 10 is returned as
        `ConversationRecord.legacy(cid, sequence)`."""
        ...

    async def messages(self, keys: Collection[str]) -> dict[str, MessageRecord]:
        """The message records stored under `message_key`s (absent: unknown or expired)."""
        ...

    async def find_conversations(
        self, tenant_id: str, *, wa_id: str | None = None, user_id: str | None = None
    ) -> list[ConversationRecord]:
        """The customer conversations of a tenant whose customer has this wa_id or this
        user_id (one per business number), ordered by conversation id."""
        ...

    async def store_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store (insert or replace, by `dead_letter_id`) dead letters in the failed store,
        durably, before the shard publishes the events of their batch.

        Succeeds where a commit does (Redis at its memory limit included), like
        `record_order`: a shard whose entry is dead stores it before it moves on, and a
        restart finds it there (`find_dead_letters`), so it republishes the same batch.
        Kept until purged.
        """
        ...

    async def find_dead_letters(self, dead_letter_ids: Collection[str]) -> dict[str, DeadLetter]:
        """The stored dead letters with these ids (absent: none stored)."""
        ...

    async def dead_letters(self, limit: int, after: str | None = None) -> list[DeadLetter]:
        """Up to `limit` dead letters, oldest first (by the time they died, then id),
        starting after the one with id `after` (the previous page's last)."""
        ...

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter, or None."""
        ...

    async def purge_dead_letters(self, dead_letter_ids: Sequence[str] | None) -> int:
        """Delete these dead letters (None: every one); returns how many were deleted."""
        ...

    async def dead_letter_count(self) -> int:
        """How many dead letters the failed store holds."""
        ...

    async def backlog(self, partition: int) -> int:
        """How many entries of the partition are not yet committed."""
        ...

    async def append_replayed(self, items: Sequence[InboxItem]) -> None:
        """Append items again for a replay, atomically, stored with `replayed=True` whatever
        they say; no delivery mark is checked or set (a replay is re-processing on purpose)."""
        ...

    async def archive_pending(self, limit: int) -> list[PendingArchive]:
        """Up to `limit` raw deliveries appended (with their items, `append_deliveries`)
        and not yet moved to the archive store, oldest first."""
        ...

    async def archive_done(self, entry_ids: Sequence[str]) -> None:
        """Delete these pending raw deliveries: the archive store has confirmed them."""
        ...

    async def archive_backlog(self) -> ArchiveBacklog:
        """How many raw deliveries wait for the archive store, and since when."""
        ...

    async def ping(self) -> None:
        """Raise TransientError unless the store is reachable."""
        ...

    async def durability(self) -> InboxDurability:
        """Read the store's durability and eviction settings now (start-up and readiness)."""
        ...

    async def stats(self) -> InboxStats:
        """Count the marks (and other expiring state) and the memory, without a key scan."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class InboxLayoutStore(Protocol):
    """The inbox's partition layout and the offline moves that change it (docs/resharding.md).

    The layout record says which WA_SHARDS the partitions' entries are placed for; the
    runner compares it with the setting before starting. A reshard (`python -m cluster
    reshard`, the service stopped) moves entries between partitions: each `move` is one
    atomic step (Redis: one script; SQLite: one transaction) that puts every entry it
    names in its target partition and takes it out of its source, so a reshard killed at
    any point leaves each entry in exactly one partition and can be run again. A moved
    entry that had been read and not committed (pending) is read as a redelivery in its new
    partition, as after a restart. The unowned partition (-1) is never listed or moved.
    """

    async def layout(self) -> InboxLayout | None:
        """The stored layout record, None when none was ever written."""
        ...

    async def set_layout(self, layout: InboxLayout) -> None:
        """Store the layout record (replacing it), durably."""
        ...

    async def occupied(self) -> dict[int, int]:
        """Every shard partition (>= 0) that holds entries, with how many: whatever count
        they were written for (Redis: every stream under the prefix)."""
        ...

    async def scan(self, partition: int, after: str | None, count: int) -> list[StoredItem]:
        """Up to `count` entries of the partition after the id `after` (None: from the
        first), in entry order, pending and unread alike; changes nothing."""
        ...

    async def recorded(self, partition: int) -> list[StoredItem]:
        """The entries of the partition's recorded batch order still in the partition, in
        the recorded order ([]: no record)."""
        ...

    async def move(self, partition: int, moves: Sequence[Move], *, recorded: bool) -> int:
        """Move these entries of the partition, in the order given, to their targets, in
        one atomic step; an entry no longer in the partition is skipped. `recorded`: they
        are the partition's recorded batch, so the same step also removes them from its
        record and appends them (by their new ids) to each target's record. Returns how
        many moved."""
        ...

    async def drop_empty(self, partition: int) -> bool:
        """Delete a partition no shard will read (>= the new count) and its record, if it
        holds no entry; whether it was empty."""
        ...

    async def fence(self, partitions: Sequence[int]) -> None:
        """Bump each partition's shard epoch (as `Inbox.claim` does, adapters/ports.py
        "Fencing"): a shard still running anywhere on these partitions has its next read
        and commit refused, so nothing reads or commits while entries move."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RateLimiter(Protocol):
    """Fixed-window request counters shared by every ingress replica that uses the store."""

    async def hit(self, limits: Sequence[tuple[str, int]]) -> float:
        """Count one request against each (key, limit per window), in one round trip.

        Returns 0.0 when every key is within its limit, else the seconds until the window
        of the exceeded key ends (the Retry-After). Raise TransientError if the store fails.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event of a batch that can never be published, by its index in the batch."""

    index: int
    reason: str


Routes = Callable[[str], RoutingRule | None]
"""A tenant id -> its routing rule (None: the service's exchange, vhost and key). The
publishers are given one at construction (cluster/backends.py), read from the live
tenant directory of the process (actors/shard_actor.py)."""


class Publisher(Protocol):
    """Publishes normalized events; returns only when the broker has confirmed them.

    Two kinds of failure, because they call for opposite answers. An outage (broker
    unreachable, a confirm that does not come) is shared by every event: `publish` raises
    TransientError and the caller retries the whole batch. An event that cannot be
    published at all (its body does not encode, it exceeds the broker's message size) is
    that event's alone: retrying it can never succeed, so it is returned as a Rejection
    and the caller publishes something else in its place.
    """

    async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
        """Publish in order and wait for every confirm; return the events rejected.

        Every event is encoded and checked before any is sent, and when one is rejected
        nothing of the batch is sent: the caller replaces the rejected events and
        publishes the batch again, every event in its place. The checks include marshalling
        each message's frames, so whatever could fail for one message fails before any is
        sent; anything raised once sending has started is an outage (TransientError, the
        batch retried as a unit). A broker that refuses a message by its size once sent
        (RabbitMQ's `max_message_size`) makes the publisher learn the limit: the retry
        rejects that event before sending. An empty list: every event is confirmed.
        """
        ...

    async def publish_dead(self, letters: Sequence[DeadLetter]) -> list[str]:
        """Publish dead letters to the dead-letter exchange (`<exchange>.dead`, key
        `<tenant>.dead.<category>.<type>`, message id the dead letter's id) and wait for
        every confirm; return the ids the broker refused (they stay in the failed store
        only). An outage raises TransientError, as `publish` does.
        """
        ...

    async def ping(self) -> None:
        """Raise TransientError unless the broker is reachable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class PendingArchive:
    """A raw delivery in the inbox, waiting for the archive store, by its inbox entry id."""

    entry_id: str
    delivery: RawDelivery


@dataclass(frozen=True, slots=True)
class ArchiveBacklog:
    """The raw deliveries waiting for the archive store (a gauge's and /readyz's source)."""

    deliveries: int
    oldest_received_at: datetime | None  # None: nothing waits


class Archive(Protocol):
    """The raw-delivery archive: every accepted body, byte for byte, for the retention.

    Layout (models/archive.py): `archive/<tenant>/<yyyy>/<mm>/<dd>/<delivery_id>`, one
    object per delivery and tenant, the day and the order taken from the time-ordered id.
    Writes are idempotent (the same delivery packs to the same bytes), so the archiver may
    write one again after a crash between the store's confirmation and the inbox's delete.
    Every failure of the store is a TransientError: the caller retries later.
    """

    async def put(self, delivery: RawDelivery) -> None:
        """Store the delivery under each of its tenants; returns once the store confirmed
        every write (S3: each PUT answered 200; the folder: written, fsynced, renamed)."""
        ...

    async def get(self, delivery_id: str) -> RawDelivery | None:
        """The archived delivery with this id (under any tenant), or None."""
        ...

    async def delivery_ids(self, tenant_id: str, start: datetime, end: datetime) -> list[str]:
        """The ids of the tenant's archived deliveries received in [start, end), in
        received order."""
        ...

    async def sweep(self, before: datetime) -> int:
        """Delete every object of a delivery received before `before`; how many."""
        ...

    async def ping(self) -> None:
        """Raise TransientError unless the store answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """`GET /{media-id}`: where to download a media file now, and what Meta says it is."""

    media_id: str
    url: str  # short-lived (~5 minutes): resolve right before downloading
    mime_type: str | None
    sha256: str | None  # hex
    file_size: int | None


class MediaSource(Protocol):
    """The Graph API's media side, with the tenant's token (adapters/graph.py)."""

    async def media_info(self, tenant_id: str, media_id: str) -> MediaInfo:
        """Resolve the id. Raises MediaUnavailable (not_found, unauthorized, no_token:
        not retryable; lookup_failed: retryable), GraphThrottled, TransientError."""
        ...

    async def download(self, tenant_id: str, info: MediaInfo, dest: Path, max_bytes: int) -> int:
        """Stream the file to `dest` (created, never read into memory whole); the bytes
        written. Only from an allowed host, no redirect elsewhere, never a private or
        loopback address that is not allowed explicitly: MediaRejected(host_not_allowed);
        more than `max_bytes`: MediaRejected(too_large), the download cut short. 401, 403
        or 404: UrlExpired (resolve again). 5xx and network errors: TransientError."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object in the media store, as `head` sees it."""

    key: str
    size: int
    content_type: str
    metadata: Mapping[str, str]  # the store's user metadata (sha256s, source, ...)


class MediaStore(Protocol):
    """Where media files go (S3/MinIO by boto3, or a folder under WA_DATA_DIR).

    Keys are models/media.py's logical keys; the store files stored objects under `media/`
    and quarantined ones under `quarantine/`, which `url` never signs. Writes are
    idempotent (same key, same bytes). Every failure of the store is a TransientError.
    """

    async def put(
        self,
        key: str,
        path: Path,
        content_type: str,
        metadata: Mapping[str, str],
        *,
        quarantine: bool = False,
    ) -> None:
        """Store the file at `path` under `key` (streamed, not read whole)."""
        ...

    async def head(self, key: str) -> StoredObject | None:
        """The stored (not quarantined) object under `key`, or None."""
        ...

    def url(self, key: str, ttl_s: float) -> tuple[str, datetime]:
        """A URL that serves the stored object until the returned expiry (S3: presigned;
        the folder: signed for the service's own `GET /media/...`). Local computation."""
        ...

    async def sweep(self, tenant_id: str, older_than: datetime) -> int:
        """Delete the tenant's stored and quarantined objects (thumbnails too) written
        before `older_than` (a tenant's `media.retention_days`); how many were deleted.
        TransientError when the store does not answer (the next sweep goes on)."""
        ...

    async def ping(self) -> None:
        """Raise TransientError unless the store answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class ServedFile:
    """A stored (never a quarantined) media file the service itself serves."""

    path: Path
    content_type: str
    size: int


UrlCheck = Literal["ok", "expired", "invalid"]
"""A signed media URL's verdict: `invalid` (bad or missing signature, or a key of another
shape) whether or not it has expired too, so an expiry tells nothing about a forgery."""


class MediaFiles(Protocol):
    """The serving side of the folder media store, for the ingress's `GET /media/{key}`
    (adapters/media_local.py signs the URLs its `url` hands out; this checks them)."""

    def check(self, key: str, expires: str | None, signature: str | None) -> UrlCheck:
        """The verdict on a URL's key, `expires` (unix seconds) and `signature` query
        parameters, as sent. Local computation, constant time in the signature."""
        ...

    async def open(self, key: str) -> ServedFile | None:
        """The stored file under `key`, or None (absent, quarantined, or not a key).
        TransientError when the folder cannot be read."""
        ...


class Scanner(Protocol):
    """A malware scanner (clamd's INSTREAM, adapters/clamd.py)."""

    async def scan(self, path: Path) -> str | None:
        """None when clean, else the signature found. TransientError when the scanner
        cannot answer (down, timed out, over its stream limit)."""
        ...

    async def ping(self) -> None:
        """Raise TransientError unless the scanner answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class AccountStore(Protocol):
    """Each tenant's business-account snapshot (models/account.py), and its analytics
    counters (models/tenant_stats.py), in the inbox's store: Redis keys under the inbox's
    prefix, tables in the embedded database (adapters/redis_accounts.py, sqlite_accounts.py).

    `put` replaces a snapshot whole (a refresh); `apply` is a read-modify-write that is
    atomic against every other `apply` and `put` of the tenant, so concurrent webhooks and a
    refresh never lose each other's fields (the later write wins per field, never per record).
    Every failure of the store is a TransientError.
    """

    async def get(self, tenant_id: str) -> AccountSnapshot | None:
        """The tenant's snapshot (None: never refreshed nor updated)."""
        ...

    async def get_many(self, tenant_ids: Collection[str]) -> dict[str, AccountSnapshot]:
        """The snapshots of these tenants that exist, in one round trip."""
        ...

    async def put(self, snapshot: AccountSnapshot) -> None:
        """Store the snapshot, replacing the tenant's."""
        ...

    async def apply(self, changes: Sequence[AccountChange]) -> None:
        """Apply the changes in order (models/account.py `apply_change`), each tenant's
        snapshot read and written back atomically."""
        ...

    async def add_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Add to the tenants' counters (tenant -> counter -> increment), one round trip."""
        ...

    async def counts(self, tenant_id: str) -> dict[str, int]:
        """The tenant's counters ({} when none)."""
        ...

    async def ping(self) -> None:
        """Raise TransientError unless the store answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class PhoneNumberFacts(Protocol):
    """What `GET /{phone-number-id}` says (adapters/graph_account.py PhoneNumberInfo)."""

    @property
    def id(self) -> str: ...
    @property
    def display_phone_number(self) -> str | None: ...
    @property
    def verified_name(self) -> str | None: ...
    @property
    def name_status(self) -> str | None: ...
    @property
    def code_verification_status(self) -> str | None: ...
    @property
    def quality_rating(self) -> str | None: ...
    @property
    def platform_type(self) -> str | None: ...
    @property
    def throughput_level(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def messaging_limit(self) -> str | None: ...


class WabaFacts(Protocol):
    """What `GET /{waba-id}` says (adapters/graph_account.py WabaInfo)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def currency(self) -> str | None: ...
    @property
    def timezone_id(self) -> str | None: ...
    @property
    def message_template_namespace(self) -> str | None: ...
    @property
    def account_review_status(self) -> str | None: ...
    @property
    def business_verification_status(self) -> str | None: ...
    @property
    def country(self) -> str | None: ...
    @property
    def ownership_type(self) -> str | None: ...


class TemplateFacts(Protocol):
    """One entry of `GET /{waba-id}/message_templates` (adapters/graph_account.py)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def language(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def category(self) -> str | None: ...
    @property
    def quality_score(self) -> str | None: ...


class AccountSource(Protocol):
    """The Graph API's business-account side, with the tenant's token (adapters/graph.py's
    GraphClient implements it). Raises GraphError (no_token, a refused token, an object
    that is not the tenant's), GraphThrottled, TransientError."""

    async def phone_number(self, tenant_id: str, phone_number_id: str) -> PhoneNumberFacts:
        """The number's name, quality and limits."""
        ...

    async def waba(self, tenant_id: str, waba_id: str) -> WabaFacts:
        """The business account's details."""
        ...

    async def templates(
        self, tenant_id: str, waba_id: str, page_size: int = 100
    ) -> Sequence[TemplateFacts]:
        """Every template of the WABA, all pages of `page_size`."""
        ...


class TenantRegistry(Protocol):
    """The tenants (models/tenant.py) in the state store: Redis keys under the inbox's
    prefix, a table in the embedded database (adapters/redis_tenants.py,
    sqlite_tenants.py). Every change bumps `version`, which each process polls to reload
    (cluster/tenant_wiring.py).

    `put` and `delete` are atomic against each other: the whole set after the change is
    checked as a TenantDirectory (an id claimed twice, two defaults: TenantConflict, nothing
    written). A deleted id is remembered so that seeding from WA_TENANTS_FILE does not bring
    it back. Every failure of the store is a TransientError.
    """

    async def version(self) -> int:
        """The registry's version (0: never written)."""
        ...

    async def load(self) -> tuple[int, list[Tenant]]:
        """The version and every tenant, read together (one snapshot)."""
        ...

    async def get(self, tenant_id: str) -> Tenant | None:
        """The tenant (None: not registered)."""
        ...

    async def put(self, tenant: Tenant, *, create: bool) -> int:
        """Store the tenant (create: TenantExists if it is registered; else TenantNotFound
        unless it is); TenantConflict when the resulting set conflicts. The new version."""
        ...

    async def delete(self, tenant_id: str) -> int:
        """Remove the tenant (TenantNotFound unless registered). The new version."""
        ...

    async def seed(self, tenants: Sequence[Tenant]) -> list[str]:
        """Add the tenants the registry has never held (neither registered nor deleted),
        in one atomic step, skipping any that would conflict (logged); their ids."""
        ...

    async def ping(self) -> None:
        """Raise TransientError unless the store answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class LimiterStateStore(Protocol):
    """What each tenant's rate limiter (actors/tenant_limiter.py) must find again after a
    restart: its Graph budget's closure (Meta's `estimated_time_to_regain_access`) and the
    usage Meta last reported, as a small JSON document per tenant, beside the inbox
    (adapters/redis_limiter_state.py, sqlite_limiter_state.py). Token balances are not
    kept: a restarted limiter starts empty. Every failure of the store is a TransientError.
    """

    async def get(self, tenant_id: str) -> bytes | None:
        """The tenant's state (None: never stored)."""
        ...

    async def put(self, tenant_id: str, state: bytes) -> None:
        """Replace the tenant's state."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class GraphBudget(Protocol):
    """A Graph API client's per-tenant call budget (the tenant limiters of issue 13):
    asked before each call, told of Meta's answers. Must not raise but as documented."""

    async def acquire(self, tenant_id: str) -> None:
        """Wait for the tenant's next call; GraphThrottled when its budget is closed for
        longer than a caller should wait (Meta throttled it: retry after)."""
        ...

    def throttled(self, tenant_id: str, code: int, retry_after_s: float) -> None:
        """Meta answered a throttling code (4, 80007, 130429, 131056, ...)."""
        ...

    def used(self, tenant_id: str, peak_pct: float, regain_s: float) -> None:
        """Meta's usage headers: the highest allowance used (percent), the wait (s)."""
        ...
