"""`healthflow console`: the local cloud's executions, dead letters and a user's aggregates on
a web page served from this machine only, the way the Step Functions console shows a deployed
execution. Everything the page loads comes from this package; nothing is sent anywhere."""

from __future__ import annotations

import argparse

from tasks.errors import HealthflowError

DEFAULT_PORT = 8765


class PortUnavailable(HealthflowError):
    """The console's address is taken (another console runs) or not allowed."""


def cmd_console(args: argparse.Namespace) -> int:
    from tasks.cli_workflow import _store  # the same local store `run`, `trace` and `dlq` use
    from tasks.console.server import make_server
    from tasks.console.state import Console
    from tasks.db.engine import get_engine
    from tasks.settings import get_settings

    console = Console(_store(), get_engine, get_settings().state_machine_file)
    try:
        server = make_server(console, args.host, args.port)
    except OSError as error:
        raise PortUnavailable(
            f"cannot listen on {args.host} port {args.port} ({error.strerror}); "
            "--port picks another (0: any free one)"
        ) from None
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


def _loopback(text: str) -> str:
    from tasks.console.server import NotLoopback, check_loopback

    try:
        return check_loopback(text)
    except NotLoopback as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return port


def add_command(sub: argparse._SubParsersAction) -> None:
    console = sub.add_parser(
        "console", help="a local web page with executions, dead letters and aggregates"
    )
    console.add_argument(
        "--host", type=_loopback, default="127.0.0.1", help="a loopback address (default)"
    )
    console.add_argument("--port", type=_port, default=DEFAULT_PORT, help="0 picks a free port")
    console.set_defaults(handler=cmd_console)
