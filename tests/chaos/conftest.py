"""The chaos suite's fixtures: a RabbitMQ node of its own (the machine's is shared)."""

from tests.support.rabbitmq_server import rabbitmq_node

__all__ = ["rabbitmq_node"]
