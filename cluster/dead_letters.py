"""`python -m cluster dead-letters list | show ID | purge ID... | purge --all`.

The failed store (the inbox's: Redis or SQLite, docs/reliability.md) read and purged from
the shell. `list` prints one JSON line per dead letter (no raw item), oldest first; `show`
prints one whole, the raw item included; `purge` deletes by id, or every one with
`--all`. Replaying one is `python -m cluster replay --dead-letter ID`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from adapters.ports import Inbox
from cluster.backends import build_inbox
from cluster.settings import Settings
from cluster.wiring import Wiring
from models.dead_letter import DeadLetter


def add_commands(sub: Any) -> None:
    """Add the `dead-letters` command to the CLI's subparsers."""
    dead = sub.add_parser("dead-letters", help="list, show or purge the failed store")
    actions = dead.add_subparsers(dest="dead_command", required=True)
    listing = actions.add_parser("list", help="one JSON line per dead letter, oldest first")
    listing.add_argument("-n", "--limit", type=int, default=100, help="at most this many")
    listing.add_argument("--after", default=None, help="start after this dead letter id")
    show = actions.add_parser("show", help="one dead letter whole, the raw item included")
    show.add_argument("dead_letter_id")
    purge = actions.add_parser("purge", help="delete dead letters by id, or --all")
    purge.add_argument("dead_letter_ids", nargs="*", default=[])
    purge.add_argument("--all", action="store_true", help="delete every dead letter")


def summary(letter: DeadLetter) -> dict[str, Any]:
    """What `list` prints of a dead letter: everything but the raw item."""
    return {
        "dead_letter_id": letter.dead_letter_id,
        "dead_at": letter.dead_at.isoformat(),
        "tenant_id": letter.tenant_id,
        "conversation_id": letter.conversation_id,
        "event_id": letter.event_id,
        "category": letter.category,
        "type": letter.type,
        "step": letter.step,
        "reason": letter.reason,
        "attempts": len(letter.attempts),
        "published": letter.published,
        "delivery_id": letter.item.delivery_id,
    }


def _line(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")


async def _run(inbox: Inbox, args: argparse.Namespace) -> int:
    try:
        if args.dead_command == "list":
            if args.limit < 1:
                print("--limit must be >= 1", file=sys.stderr)
                return 2
            for letter in await inbox.dead_letters(args.limit, args.after):
                _line(summary(letter))
            return 0
        if args.dead_command == "show":
            found = await inbox.dead_letter(args.dead_letter_id)
            if found is None:
                print(f"no dead letter {args.dead_letter_id}", file=sys.stderr)
                return 1
            _line(found.model_dump(mode="json"))
            return 0
        if args.all == bool(args.dead_letter_ids):
            print("purge: give dead letter ids, or --all (not both)", file=sys.stderr)
            return 2
        ids = None if args.all else list(args.dead_letter_ids)
        _line({"purged": await inbox.purge_dead_letters(ids)})
        return 0
    finally:
        await inbox.close()


def dead_letters_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `dead-letters` action against the configured inbox; the exit status."""
    inbox = build_inbox(Wiring.from_settings(settings).inbox)
    return asyncio.run(_run(inbox, args))
