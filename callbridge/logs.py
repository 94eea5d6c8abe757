"""Structured JSON logs on stderr: one object per line, with the call id when there is one.

pipecat logs through loguru, whose own handler writes coloured text to stderr (its banner at
import, its warnings during calls): loguru is routed into :mod:`logging` here, so the agent's
lines are JSON objects like everyone else's. Hypercorn gets our logger in place of its own
handler (``control/plane.py``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
    # websockets says "connection open" / "connection closed" with an object's repr at INFO for
    # every agent link and every /ready probe; the calls' own records say more. Its warnings stay.
    quiet = root.level > logging.DEBUG
    logging.getLogger("websockets").setLevel(logging.WARNING if quiet else logging.NOTSET)
    _route_loguru(level.upper())


def _route_loguru(level: str) -> None:
    try:
        from loguru import logger
    except ImportError:  # serve-only installs need not have it
        return
    logger.remove()  # its default stderr handler
    logger.add(_loguru_to_logging, level=level, format="{message}")


def _loguru_to_logging(message: Any) -> None:
    """A loguru sink: the record goes on to the :mod:`logging` logger of the same name (loguru's
    level numbers are logging's: DEBUG 10 ... CRITICAL 50, plus TRACE 5 and SUCCESS 25)."""
    record = message.record
    exc = record["exception"]
    exc_info = (exc.type, exc.value, exc.traceback) if exc is not None and exc.type else None
    logging.getLogger(record["name"] or "loguru").log(
        record["level"].no, "%s", record["message"], exc_info=exc_info
    )
