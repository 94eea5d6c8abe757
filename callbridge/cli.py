"""``callbridge``: the one console command. Each subcommand lives in the package that owns it and
exposes ``add_arguments(parser)`` and ``run(namespace) -> int``; they are imported lazily so that
``callbridge serve`` does not import pipecat and ``callbridge agent`` does not import Quart."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("callbridge.serve", "run the media core and the control plane"),
    "agent": ("ai_pipeline.cli", "run the agent server (pipecat pipelines, or --echo)"),
    "bench": ("bench.cli", "measure capacity, latency and quality"),
    "db": ("control.cli", "database migrations and maintenance"),
    "doctor": ("callbridge.doctor", "check a deployment and say what is wrong and how to fix it"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Only the subcommand being run has its module imported and its arguments added."""
    parser = argparse.ArgumentParser(
        prog="callbridge", description="callbridge: AI voice agents on phone calls."
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="JSON log lines on stderr from this level up (default %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((arg for arg in argv if arg in SUBCOMMANDS), None)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        if name == chosen:
            _load(module).add_arguments(p)
    return parser


def _load(module: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(module)


def main(argv: Sequence[str] | None = None) -> int:
    from callbridge.logs import configure_logging
    from media.config import ConfigError

    args = list(sys.argv[1:] if argv is None else argv)
    configure_logging()  # before a subcommand's imports can log (pipecat logs as it loads)
    ns = build_parser(args).parse_args(args)
    configure_logging(ns.log_level)
    try:
        return int(_load(ns._module).run(ns))
    except ConfigError as exc:
        print(f"callbridge {ns.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
