"""`python -m loadtest run | graph-sim | tenants-file | bench`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadtest.run_command import add_run_arguments, main_run
from loadtest.tenants import generate_tenants, write_tenants_file


def _graph_sim(args: argparse.Namespace) -> int:
    import uvicorn

    from loadtest.graph_sim import GraphSim, GraphSimConfig, create_graph_app
    from loadtest.tenants import load_tenants_file

    tenants = (
        load_tenants_file(args.tenants_file)
        if args.tenants_file
        else generate_tenants(args.tenants, seed=args.seed)
    )
    for tenant in tenants:
        print(
            f"tenant {tenant.id}: token {tenant.access_token} "
            f"numbers {[n.phone_number_id for n in tenant.numbers]} wabas {tenant.waba_ids}"
        )
    config = GraphSimConfig(
        tenants,
        url_ttl_s=args.url_ttl,
        calls_per_window=args.calls_per_window,
        window_s=args.window,
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

    tfile = sub.add_parser("tenants-file", help="write a WA_TENANTS_FILE of generated tenants")
    tfile.add_argument("--tenants", type=int, default=4)
    tfile.add_argument("--seed", type=int, default=1)
    tfile.add_argument("--out", type=Path, required=True)

    bench = sub.add_parser("bench", help="three-way benchmark (make bench)")
    from loadtest.bench import add_bench_arguments, main_bench

    add_bench_arguments(bench)
    args = parser.parse_args(argv)
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
