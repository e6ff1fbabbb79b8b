"""`python -m cluster send-test`: sign a sample webhook with the default tenant's secret."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from cluster.settings import Settings
from ingress.signature import sign


def sample_body(now: int | None = None) -> dict[str, Any]:
    """A text message from one customer plus a read status to another, in one delivery."""
    ts = str(now if now is not None else int(time.time()))
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [
                                {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}
                            ],
                            "messages": [
                                {
                                    "from": "16505551234",
                                    "id": f"wamid.TEST{ts}",
                                    "timestamp": ts,
                                    "text": {"body": "Does it come in another color?"},
                                    "type": "text",
                                }
                            ],
                            "statuses": [
                                {
                                    "id": f"wamid.OUT{ts}",
                                    "status": "read",
                                    "timestamp": ts,
                                    "recipient_id": "16505550000",
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def send_test(settings: Settings, url: str | None, file: str | None) -> int:
    """POST the body signed with the first secret of the default tenant; print the answer."""
    tenants = settings.tenants()
    tenant = next((t for t in tenants if t.default), tenants[0])
    body = Path(file).read_bytes() if file else orjson.dumps(sample_body())
    secret = tenant.app_secrets[0].get_secret_value().encode()
    target = url or f"http://{settings.host}:{settings.port}/webhook"
    response = httpx.post(
        target,
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body)},
        timeout=10,
    )
    print(response.status_code, response.text)
    return 0 if response.status_code == 200 else 1
