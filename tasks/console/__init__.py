"""`healthflow console`: the local cloud's executions, dead letters and a user's aggregates on
a web page served from this machine only, the way the Step Functions console shows a deployed
execution. Everything the page loads comes from this package; nothing is sent anywhere."""

from __future__ import annotations

import argparse

DEFAULT_PORT = 8765


def cmd_console(args: argparse.Namespace) -> int:
    from tasks.cli_workflow import _store  # the same local store `run`, `trace` and `dlq` use
    from tasks.console.server import make_server
    from tasks.console.state import Console
    from tasks.db.engine import get_engine
    from tasks.settings import get_settings

    console = Console(_store(), get_engine, get_settings().state_machine_file)
    server = make_server(console, args.host, args.port)
    host, port = str(server.server_address[0]), server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"healthflow console: http://{shown}:{port}/  (this machine only; Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    console = sub.add_parser(
        "console", help="a local web page with executions, dead letters and aggregates"
    )
    console.add_argument("--host", default="127.0.0.1", help="a loopback address (default)")
    console.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    console.set_defaults(handler=cmd_console)
