"""The CLI: `python -m cluster run | events tail | send-test | schema export|check |
deliveries show | replay | dead-letters | tenants | media sweep | reshard | local-cluster`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from cluster.dead_letters import add_commands as add_dead_letter_commands
from cluster.dead_letters import dead_letters_command
from cluster.local_cluster import add_commands as add_local_cluster_commands
from cluster.local_cluster import local_cluster_command
from cluster.logging import configure_logging
from cluster.media_sweep import add_commands as add_media_commands
from cluster.media_sweep import media_command
from cluster.replay import add_commands as add_replay_commands
from cluster.replay import replay_command
from cluster.reshard import add_commands as add_reshard_commands
from cluster.reshard import reshard_command
from cluster.settings import Settings, SettingsError
from cluster.tenants_cli import add_commands as add_tenant_commands
from cluster.tenants_cli import tenants_command

if TYPE_CHECKING:
    from cluster.send_test import MediaSend


def _events_tail(settings: Settings, follow: bool, limit: int) -> int:
    from adapters.outbox import read_outbox

    path = settings.data_dir / "outbox.db"
    last = 0
    while True:
        for row in read_outbox(path, after=last, limit=limit):
            last = row["seq"]
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        sys.stdout.flush()
        if not follow:
            return 0
        time.sleep(0.5)


# cluster/send_test.py's, restated so that the CLI's start does not import httpx.
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")


def _media_send(args: argparse.Namespace) -> MediaSend | None:
    """send-test's --media options, None without --media."""
    from cluster.send_test import SAMPLE_PHONE_NUMBER_ID, MediaSend

    if args.media is None:
        return None
    return MediaSend(
        file=Path(args.media),
        kind=args.type,
        mime_type=args.mime,
        graph_url=args.graph_url,
        token=args.token,
        phone_number_id=args.phone_number_id or SAMPLE_PHONE_NUMBER_ID,
        caption=args.caption,
        voice=args.voice,
    )


def _without_settings(args: argparse.Namespace) -> int | None:
    """Run a command that needs no settings (None: the command needs them)."""
    if args.command == "local-cluster":  # Ray's own processes only
        return local_cluster_command(args.action, Path(args.dir), args.workers, args.node)
    if args.command == "allowlist":  # a file transformation
        from cluster.allowlist import allowlist_command

        return allowlist_command(args.action, args.file, args.out)
    if args.command == "schema":  # generated from the models alone
        from cluster.schema import schema_command

        return schema_command(args.action)
    return None


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the service in the foreground (make run)")
    events = sub.add_parser("events", help="read published events")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    tail = events_sub.add_parser("tail", help="print the embedded outbox as JSON lines")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument("-n", "--limit", type=int, default=1000, help="rows per read")
    send = sub.add_parser("send-test", help="POST a signed sample webhook to the service")
    send.add_argument("--url", default=None, help="default: http://WA_HOST:WA_PORT/webhook")
    send.add_argument("--file", default=None, help="a webhook body to sign and send")
    send.add_argument("--media", default=None, help="upload this file, send a message of it")
    send.add_argument("--type", default=None, choices=MEDIA_TYPES, help="default: from MIME")
    send.add_argument("--mime", default=None, help="default: guessed from the file name")
    send.add_argument("--graph-url", default=None, help="default: WA_GRAPH_API_URL")
    send.add_argument("--token", default=None, help="default: WA_ACCESS_TOKEN")
    send.add_argument("--phone-number-id", default=None, help="default: the sample's")
    send.add_argument("--caption", default=None, help="image, video and document only")
    send.add_argument("--voice", action="store_true", help="audio: a voice note")
    schema = sub.add_parser("schema", help="the published event JSON Schema")
    schema.add_argument("action", choices=["export", "check"], help="write it, or verify it")
    allow = sub.add_parser("allowlist", help="build the source-IP allowlist file")
    allow.add_argument("action", choices=["from-whois"], help="from Meta's AS32934 routes")
    allow.add_argument("file", help="saved output of: whois ... AS32934 | grep ^route")
    allow.add_argument("-o", "--out", default=None, help="write here (default: stdout)")
    add_replay_commands(sub)  # deliveries show, replay (cluster/replay.py)
    add_dead_letter_commands(sub)  # dead-letters list|show|purge (cluster/dead_letters.py)
    add_tenant_commands(sub)  # tenants list|show|add|disable|enable|delete (tenants_cli.py)
    add_media_commands(sub)  # media sweep (cluster/media_sweep.py)
    add_reshard_commands(sub)  # reshard --shards N (cluster/reshard.py)
    add_local_cluster_commands(sub)  # local-cluster up|down|status|kill-raylet
    args = parser.parse_args(argv)
    done = _without_settings(args)
    if done is not None:
        return done

    try:
        settings = Settings()
        configure_logging(settings.log_level)
        if args.command == "run":
            from cluster.runner import run

            return run(settings)
        if args.command == "dead-letters":
            return dead_letters_command(settings, args)
        if args.command == "tenants":
            return tenants_command(settings, args)
        if args.command == "media":
            return media_command(settings, args)
        if args.command == "reshard":
            return reshard_command(settings, args)
        if args.command == "events":
            return _events_tail(settings, args.follow, args.limit)
        if args.command in ("deliveries", "replay"):
            return replay_command(settings, args)
        from cluster.send_test import send_test

        return send_test(settings, args.url, args.file, _media_send(args))
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
