"""Consumer queues the publisher provisions for the downstream services (WA_RABBITMQ_QUEUES).

Each is a durable quorum queue bound to the events exchange with the service's patterns.
A message its consumer rejects (requeue=false), or returns past the delivery limit (a
consumer that crashes on it, or keeps nacking it with requeue=true), is dead-lettered by
the broker to `<exchange>.dead` under its original routing key, with its `x-death`
history (queue, reason `rejected` or `delivery_limit`, count, time), beside the dead
letters the service itself publishes there (`<tenant>.dead.<category>.<type>`).

Why at-least-once dead-lettering: a quorum queue's default (at-most-once) drops a
dead-lettered message if the dead-letter exchange does not route it or the target queue
does not take it, and what the service acknowledged to Meta is the company's only copy.
At-least-once keeps the message in the source queue until the dead-letter target has
confirmed it (RabbitMQ >= 3.10). It requires `x-overflow: reject-publish`, which matters
only under a length limit (none is set here): a queue at a limit set by policy then nacks
new publishes, and the shard retries them as an outage instead of the queue dropping its
oldest messages.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConsumerQueue"]


@dataclass(frozen=True, slots=True)
class ConsumerQueue:
    """A durable quorum queue, its binding patterns on the events exchange and the number
    of deliveries after which the broker dead-letters a message it keeps getting back."""

    name: str
    bindings: tuple[str, ...]
    delivery_limit: int

    def arguments(self, dead_letter_exchange: str) -> dict[str, str | int]:
        """The queue's declare arguments (a queue that exists with others is refused)."""
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": dead_letter_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": self.delivery_limit,
        }
