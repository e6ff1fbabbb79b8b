"""`python -m loadtest run | graph-sim | tenants-file | bench`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

# send-test's sample ids, re-exported (the graph-sim CLI's tests name them from here)
from loadtest.media_traffic import SAMPLE_DISPLAY_NUMBER as SAMPLE_DISPLAY_NUMBER
from loadtest.media_traffic import SAMPLE_PHONE_NUMBER_ID as SAMPLE_PHONE_NUMBER_ID
from loadtest.media_traffic import SAMPLE_WABA_ID as SAMPLE_WABA_ID
from loadtest.run_command import add_run_arguments, main_run
from loadtest.tenants import (
    DEV_APP_SECRET,
    BusinessNumber,
    SimTenant,
    generate_tenants,
    write_tenants_file,
)


def _one_tenant(args: argparse.Namespace) -> SimTenant:
    """The tenant `--token` (with `--tenant-id`, `--phone-number-id`, `--waba-id`) defines."""
    number = BusinessNumber(
        args.phone_number_id or SAMPLE_PHONE_NUMBER_ID,
        SAMPLE_DISPLAY_NUMBER,
        args.waba_id or SAMPLE_WABA_ID,
    )
    return SimTenant(args.tenant_id or "default", DEV_APP_SECRET, (number,), args.token)


def _graph_sim(args: argparse.Namespace) -> int:
    import uvicorn

    from loadtest.graph_sim import GraphSim, GraphSimConfig, create_graph_app
    from loadtest.tenants import load_tenants_file

    if args.token:
        tenants = [_one_tenant(args)]
    elif args.tenants_file:
        tenants = load_tenants_file(args.tenants_file)
    else:
        tenants = generate_tenants(args.tenants, seed=args.seed)
    url = f"http://{args.host}:{args.port}"
    media_base = args.media_base_url
    if media_base is not None and not media_base.endswith("/"):
        media_base += "/"
    media_host = urlsplit(media_base or url).hostname
    print(f"Graph API simulator on {url} (media download links on {media_base or url + '/'})")
    for tenant in tenants:
        print(
            f"tenant {tenant.id}: token {tenant.access_token} "
            f"numbers {[n.phone_number_id for n in tenant.numbers]} wabas {list(tenant.waba_ids)}"
        )
    print(
        f"service: WA_GRAPH_API_URL={url} WA_MEDIA_ALLOWED_HOSTS={media_host} "
        f"WA_ACCESS_TOKEN={tenants[0].access_token} (or the tenants' file's access_token)",
        flush=True,
    )
    config = GraphSimConfig(
        tenants,
        url_ttl_s=args.url_ttl,
        calls_per_window=args.calls_per_window,
        window_s=args.window,
        media_base_url=media_base,
    )
    uvicorn.run(
        create_graph_app(GraphSim(config)), host=args.host, port=args.port, log_level="warning"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(sub.add_parser("run", help="open-loop load test against a URL"))

    graph = sub.add_parser("graph-sim", help="serve the simulated Graph API")
    graph.add_argument("--host", default="127.0.0.1")
    graph.add_argument("--port", type=int, default=8900)
    graph.add_argument("--tenants", type=int, default=2)
    graph.add_argument("--tenants-file", type=Path, default=None)
    graph.add_argument("--seed", type=int, default=1)
    graph.add_argument("--url-ttl", type=float, default=300.0, help="media link lifetime (s)")
    graph.add_argument("--calls-per-window", type=int, default=0, help="0: unlimited")
    graph.add_argument("--window", type=float, default=60.0)
    one = graph.add_argument_group(
        "one tenant", "define the only tenant exactly (instead of --tenants/--tenants-file)"
    )
    one.add_argument("--token", default=None, help="its Graph token (the WA_ACCESS_TOKEN)")
    one.add_argument("--tenant-id", default=None, help="default: default (WA_TENANT_ID's)")
    one.add_argument(
        "--phone-number-id", default=None, help=f"default: {SAMPLE_PHONE_NUMBER_ID} (send-test's)"
    )
    one.add_argument("--waba-id", default=None, help=f"default: {SAMPLE_WABA_ID}")
    graph.add_argument(
        "--media-base-url",
        default=None,
        help="where download links point (Meta: https://lookaside.fbsbx.com/); "
        "default: the simulator's own URL",
    )

    tfile = sub.add_parser("tenants-file", help="write a WA_TENANTS_FILE of generated tenants")
    tfile.add_argument("--tenants", type=int, default=4)
    tfile.add_argument("--seed", type=int, default=1)
    tfile.add_argument("--out", type=Path, required=True)

    bench = sub.add_parser("bench", help="three-way benchmark (make bench)")
    from loadtest.bench import add_bench_arguments, main_bench

    add_bench_arguments(bench)
    args = parser.parse_args(argv)
    one_tenant = ("tenant_id", "phone_number_id", "waba_id")
    if args.command == "graph-sim" and args.token is None and any(map(vars(args).get, one_tenant)):
        parser.error("--tenant-id, --phone-number-id and --waba-id need --token")
    if args.command == "run":
        return main_run(args)
    if args.command == "graph-sim":
        return _graph_sim(args)
    if args.command == "tenants-file":
        write_tenants_file(generate_tenants(args.tenants, seed=args.seed), args.out)
        print(args.out)
        return 0
    return main_bench(args)


if __name__ == "__main__":
    sys.exit(main())
