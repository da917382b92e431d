"""``landscape explore``: the Dash explorer over a folder of runs."""

from __future__ import annotations

import argparse
import logging
import socket

from .commands import help_of
from .numbers import PORT, number

EXAMPLES = """examples:
  landscape explore runs/demo                       # then open http://127.0.0.1:8050
  landscape explore runs --port 8060
  landscape explore /shared/runs --host 0.0.0.0     # reachable from other machines: only on a trusted network
  landscape explore runs --host 0.0.0.0 --allow-host lab.example.org   # the name colleagues type

Serves every run and analysis file under ROOT (ours and loss-landscape's): a sortable runs
table, 2-D surfaces (contour, heat map, 3-D; click a point for the slices through it),
1-D curves, Hessian spectra, sweeps, and a compare view. New files appear while jobs run.
Only files under ROOT are served (analysis files and figures; no link that leaves ROOT is followed);
nothing is unpickled. Requests must name this server in their Host header: the bound address, this
machine's names, or an --allow-host (a guard against DNS rebinding)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explore",
        help=help_of("explore"),
        description="Serve an interactive explorer over every run and analysis file under ROOT.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="folder of runs")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind [%(default)s: this machine only]")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a further host name browsers may use to reach the server (repeatable; '*': any)",
    )
    p.add_argument("--port", type=PORT, default=8050, help="[%(default)s]")
    p.add_argument(
        "--refresh", type=number(float, least=0.2), default=3.0, help="seconds between rescans of ROOT [%(default)s]"
    )
    p.set_defaults(run=run)


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """The names a request may carry in its ``Host`` header: the bound address, the loopback names, and where the
    server listens on every interface (0.0.0.0, ::) this machine's own names; plus ``extra``."""
    from landscape.apps.explorer.app import LOOPBACK

    names = [host, *LOOPBACK, *extra]
    if host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    return names


def serve(root: str, host: str = "127.0.0.1", port: int = 8050, refresh: float = 3.0, allow: list[str] = ()) -> None:
    from landscape.apps.explorer.app import create_app
    from landscape.apps.explorer.serving import THREADS, make_server

    if refresh <= 0:
        raise ValueError(f"--refresh must be > 0, got {refresh}")
    app = create_app(root, refresh_s=refresh, hosts=allowed_hosts(host, list(allow)))
    try:  # say so in one line before Flask starts (it would print a banner and exit 1)
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise ValueError(f"cannot serve on {host}:{port}: {e.strerror or e} (choose another --port)") from None
    server = make_server(app.server, host, port)
    print(
        f"landscape explorer: serving {root} at http://{host}:{port}/ (waitress, {THREADS} threads; Ctrl-C stops)",
        flush=True,
    )
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" lines under load
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl-C: stop serving; exit status 0
        pass
    finally:
        server.close()


def run(args: argparse.Namespace) -> int:
    serve(args.root, args.host, args.port, args.refresh, args.allow_host)
    return 0
