"""Run kubesim as a standalone local Kubernetes API server.

`python -m kubesim --port P --token T [--namespaces a,b] [--tfjob-operator training-operator|tf-operator|none]
[--no-volcano] [--no-jobset] [--gang-scheduler volcano] [--time-scale X] [--scenario S] [--kubeconfig PATH]
[--host H] [--no-tls]` starts the server (and controllers), prints the URL and CA file, optionally writes a
kubeconfig, and runs until interrupted. `--gang-scheduler volcano` is training-operator's
`--gang-scheduler-name` (TFJobs get Volcano PodGroups; tf-operator ignores it). The JobSet controller
(kubernetes-sigs/jobset v0.12.0) runs unless `--no-jobset`. The process keeps what survives a full garbage
collection out of later ones (kubesim.heap), as its heap is mostly the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from kubesim.heap import keep_survivors_out_of_collections
from kubesim.testing import KubeSim


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m kubesim", description="local simulated Kubernetes API server")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    parser.add_argument("--port", type=int, default=6443, help="port (0 = ephemeral)")
    parser.add_argument("--token", default="kubesim-token", help="bearer token clients must send")
    parser.add_argument("--namespaces", default="default", help="comma-separated namespaces to create")
    parser.add_argument("--tfjob-operator", default="training-operator",
                        choices=["training-operator", "tf-operator", "none"])
    parser.add_argument("--no-volcano", action="store_true", help="do not run the Volcano controller")
    parser.add_argument("--no-jobset", action="store_true", help="do not run the JobSet controller")
    parser.add_argument("--gang-scheduler", metavar="NAME", choices=["volcano"],
                        help="gang-schedule TFJobs through PodGroups of this scheduler (training-operator only)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="real seconds per simulated second")
    parser.add_argument("--scenario", default="succeed", help="default job scenario")
    parser.add_argument("--history-limit", type=int, default=100 * 1024,
                        help="most watch events kept (default: the API server watch cache's upper bound); the "
                             "events of the last 75 s are kept up to this bound")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server to PATH")
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP (kubectl will not send the token)")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    """Start kubesim and serve until SIGINT/SIGTERM."""
    sim = KubeSim(namespaces=[n for n in args.namespaces.split(",") if n], token=args.token,
                  tfjob_operator=None if args.tfjob_operator == "none" else args.tfjob_operator,
                  volcano=not args.no_volcano, time_scale=args.time_scale, default_scenario=args.scenario,
                  tls=not args.no_tls, host=args.host, port=args.port, history_limit=args.history_limit,
                  gang_scheduler=args.gang_scheduler, jobset=not args.no_jobset)
    await sim.start()
    # a long-lived server process whose heap is mostly the store: see kubesim.heap
    keep_survivors_out_of_collections()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"kubesim listening on {sim.url}", flush=True)
    if sim.ca_file:
        print(f"CA certificate: {sim.ca_file}", flush=True)
    if args.kubeconfig:
        print(f"kubeconfig: {sim.write_kubeconfig(args.kubeconfig)}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
