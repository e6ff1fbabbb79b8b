"""WA_RABBITMQ_QUEUES and WA_RABBITMQ_DELIVERY_LIMIT: parsed once into the publisher's config;
bad input refused at start-up with a message naming the variable and the bad part."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.backends import RabbitPublisherConfig
from cluster.settings import Settings, SettingsError
from cluster.wiring import Wiring

_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _settings(**values: Any) -> Settings:
    return Settings.model_construct(rabbitmq_url=_URL, **values)


def test_queues_and_their_patterns_reach_the_publisher_config() -> None:
    """The documented example, spaces and a trailing `;` tolerated, order kept."""
    text = "inbound-transformer = *.message.#, *.status.# ; state-manager=*.conversation.#;"
    publisher = Wiring.from_settings(_settings(rabbitmq_queues=text)).publisher
    assert isinstance(publisher, RabbitPublisherConfig)
    assert publisher.queues == (
        ("inbound-transformer", ("*.message.#", "*.status.#")),
        ("state-manager", ("*.conversation.#",)),
    )
    assert publisher.delivery_limit == 20
    assert publisher.dead_queue is True


def test_no_queues_by_default() -> None:
    """Unset: nothing is provisioned beyond the service's own queues."""
    publisher = Wiring.from_settings(_settings()).publisher
    assert isinstance(publisher, RabbitPublisherConfig)
    assert publisher.queues == ()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("inbound", "expected queue=pattern"),
        ("inbound=", "has no binding pattern"),
        ("=*.message.#", "queue name ''"),
        ("amq.mine=#", "queue name 'amq.mine'"),
        ("a=#;a=*.status.#", "named twice"),
        ("whatsapp.events.dead=#", "named twice or is one the service declares"),
        ("inbound=*.Message.#", "pattern '*.Message.#'"),
        ("inbound=*..#", "pattern '*..#'"),
        ("inbound=acme.message.te*t", "pattern 'acme.message.te*t'"),
    ],
)
def test_bad_queue_specs_are_refused_naming_the_part(text: str, named: str) -> None:
    """Each malformed spec: SettingsError with the variable and what is wrong."""
    with pytest.raises(SettingsError, match="WA_RABBITMQ_QUEUES") as caught:
        Wiring.from_settings(_settings(rabbitmq_queues=text))
    assert named in str(caught.value)


def test_queues_need_rabbitmq() -> None:
    """Queues without WA_RABBITMQ_URL (the embedded outbox) would be silently ignored: refused."""
    with pytest.raises(SettingsError, match="needs WA_RABBITMQ_URL"):
        Settings.model_construct(rabbitmq_queues="inbound=#").check()


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_delivery_limit_out_of_range_is_refused(limit: int) -> None:
    """1-1000 deliveries."""
    with pytest.raises(SettingsError, match="WA_RABBITMQ_DELIVERY_LIMIT"):
        _settings(rabbitmq_delivery_limit=limit).check()
