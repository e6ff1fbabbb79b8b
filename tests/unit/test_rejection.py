"""The rejection family: each class's status, code and message are the answer Meta (and the
security suite) sees, so they are pinned here one by one."""

from __future__ import annotations

import orjson
import pytest

from ingress import account_admin, admin, media, rejection, replay_admin, tenant_admin
from ingress.rejection import RequestRejected, error_response

# (class, status, code, message when the raiser adds none)
TABLE: list[tuple[type[RequestRejected], int, str, str]] = [
    (rejection.SourceNotAllowed, 403, "source_not_allowed", "source address not allowed"),
    (rejection.UnsupportedMediaType, 415, "unsupported_media_type", "Content-Type must be JSON"),
    (rejection.BadContentLength, 400, "bad_content_length", "Content-Length is not a number"),
    (rejection.BodyTimeout, 408, "request_timeout", "body not received in time"),
    (rejection.SignatureMissing, 401, "signature_missing", "missing X-Hub-Signature-256"),
    (rejection.SignatureInvalid, 403, "signature_mismatch", "signature does not match"),
    (rejection.InvalidJson, 400, "invalid_json", "body is not valid JSON"),
    (rejection.BodyOutOfBounds, 400, "body_out_of_bounds", "the body is out of bounds"),
    (rejection.NotAWebhook, 400, "not_a_whatsapp_webhook", "not a WhatsApp webhook"),
    (rejection.TooManyItems, 413, "too_many_items", "the delivery holds too many items"),
    (
        rejection.DeliveryTooLarge,
        413,
        "delivery_too_large",
        "the delivery would store too much",
    ),
    (rejection.TenantDisabled, 403, "tenant_disabled", "the tenant is disabled"),
    (rejection.InboxUnavailable, 503, "inbox_unavailable", "try again later"),
    (admin.InvalidLookup, 400, "invalid_lookup", "invalid look-up parameters"),
    (admin.ConversationNotFound, 404, "conversation_not_found", "no such conversation"),
    (replay_admin.InvalidReplay, 400, "invalid_replay", "invalid replay request"),
    (replay_admin.NothingToReplay, 404, "replay_not_found", "nothing to replay by that id"),
    (account_admin.TenantNotFound, 404, "tenant_not_found", "no such tenant"),
    (tenant_admin.InvalidTenant, 400, "invalid_tenant", "invalid tenant"),
    (tenant_admin.TenantAlreadyExists, 409, "tenant_exists", "a tenant by that id exists"),
    (tenant_admin.TenantsConflict, 409, "tenant_conflict", "the tenants would conflict"),
    (media.MediaNotFound, 404, "not_found", "no such media file"),
    (media.MediaSignatureInvalid, 403, "signature_mismatch", "the URL's signature is not valid"),
    (media.MediaUrlExpired, 403, "url_expired", "the URL has expired"),
    (media.MediaStoreUnavailable, 503, "store_unavailable", "the media store did not answer"),
]


def _family(cls: type[RequestRejected]) -> list[type[RequestRejected]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_family(sub))]


@pytest.mark.parametrize(("cls", "status", "code", "message"), TABLE, ids=lambda v: str(v))
def test_each_rejection_carries_its_status_code_and_message(
    cls: type[RequestRejected], status: int, code: str, message: str
) -> None:
    """Raised bare: the class's status and code, its default message, no headers."""
    raised = cls()
    assert (raised.status, raised.code, raised.message, raised.headers) == (
        status,
        code,
        message,
        None,
    )
    assert str(raised) == message


def test_a_raiser_may_say_more() -> None:
    """A specific message replaces the default, the status and code stay."""
    raised = rejection.BodyOutOfBounds("an array holds more than 3 elements")
    assert (raised.status, raised.message) == (400, "an array holds more than 3 elements")


def test_body_too_large_names_the_cap() -> None:
    """413 body_too_large, "body exceeds <cap> bytes"."""
    raised = rejection.BodyTooLarge(65536)
    assert (raised.status, raised.code, raised.message) == (
        413,
        "body_too_large",
        "body exceeds 65536 bytes",
    )


@pytest.mark.parametrize(
    ("retry_after", "header"), [(0.01, "1"), (0.75, "1"), (1.2, "2"), (59.5, "60")]
)
def test_rate_limited_carries_retry_after_in_whole_seconds(retry_after: float, header: str) -> None:
    """429 rate_limited with Retry-After rounded up, never 0."""
    raised = rejection.RateLimited(retry_after)
    assert (raised.status, raised.code, raised.message) == (
        429,
        "rate_limited",
        "too many requests",
    )
    assert raised.headers == {"Retry-After": header}


def test_overloaded_asks_meta_to_retry_in_a_second() -> None:
    """503 overloaded with Retry-After 1 (past the replica's budget of unverified bytes)."""
    raised = rejection.Overloaded()
    assert (raised.status, raised.code, raised.message, raised.headers) == (
        503,
        "overloaded",
        "too many bodies in flight, retry later",
        {"Retry-After": "1"},
    )


def test_a_store_outage_of_the_admin_api_asks_to_retry_in_a_second() -> None:
    """503 store_unavailable with Retry-After 1 (an admin look-up the store did not answer)."""
    raised = admin.StateStoreUnavailable()
    assert (raised.status, raised.code, raised.message, raised.headers) == (
        503,
        "store_unavailable",
        "the store did not answer",
        {"Retry-After": "1"},
    )


def test_every_rejection_is_in_the_table() -> None:
    """A new rejection gets its row here (the table is the contract of the error answers)."""
    tabled = {row[0] for row in TABLE} | {
        rejection.BodyTooLarge,
        rejection.RateLimited,
        rejection.Overloaded,
        admin.StateStoreUnavailable,
    }
    assert set(_family(RequestRejected)) == tabled


def test_the_error_body_has_one_shape() -> None:
    """{"error": {"code", "message"}} with the status and headers given."""
    response = error_response(429, "rate_limited", "too many requests", {"Retry-After": "3"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert orjson.loads(response.body) == {
        "error": {"code": "rate_limited", "message": "too many requests"}
    }
