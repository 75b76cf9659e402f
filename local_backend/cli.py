"""``local-backend serve``: run the backend with uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from local_backend.config import ConfigError, default_config_path, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="local-backend", description="Local open-weights model server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the OpenAI-compatible API")
    serve.add_argument("--config", default=str(default_config_path()), help="models.yaml (default: packaged)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8100)
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    ray = commands.add_parser("serve-ray", help="serve the same API as a Ray Serve application")
    ray.add_argument("--config", default=str(default_config_path()), help="models.yaml (default: packaged)")
    ray.add_argument("--host", default="127.0.0.1")
    ray.add_argument("--port", type=int, default=8100)
    ray.add_argument("--ray-address", default=None, help="cluster to join (default: start a local one)")
    ray.add_argument("--num-cpus", type=int, default=None, help="CPUs of a new local Ray instance")
    ray.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    check = commands.add_parser("check-config", help="validate a models.yaml and exit")
    check.add_argument("--config", default=str(default_config_path()))
    return parser


def _clean_exit_server_class() -> type[Any]:
    import uvicorn

    class CleanExitServer(uvicorn.Server):
        """uvicorn's server, minus re-raising SIGTERM/SIGINT once the graceful shutdown is over.

        uvicorn drains connections and runs the lifespan shutdown (which stops the model workers), then
        re-raises the signal so the process dies of it (status -15).  The backend's contract is a clean
        exit with status 0 after that graceful shutdown, so the signal is only recorded as "exit now".
        """

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop waiting for open connections
            else:
                self.should_exit = True

    return CleanExitServer


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m local_backend`` and the ``local-backend`` console script."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"local-backend: {error}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: {len(config.models)} models OK")
        return 0
    if args.command == "serve-ray":
        try:
            from local_backend.ray_serve import serve_on_ray
        except ImportError as error:  # Ray is an optional dependency of this one command
            print(f"local-backend: serve-ray needs ray[serve]: {error}", file=sys.stderr)
            return 2
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return serve_on_ray(
            config, host=args.host, port=args.port, ray_address=args.ray_address, num_cpus=args.num_cpus
        )

    import uvicorn

    from local_backend.app import build_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = _clean_exit_server_class()(
        uvicorn.Config(
            build_app(config),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            timeout_graceful_shutdown=10,
        )
    )
    server.run()
    return 0 if server.started else 1
