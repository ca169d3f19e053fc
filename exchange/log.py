"""structlog set-up: JSON lines when output is not a terminal, readable console otherwise.

Bind `message_id`, `case` and `node` to loggers; never log payload contents (they are
personal data), only ids and digests.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


def configure(level: str | None = None, *, json: bool | None = None) -> None:
    """Configure structlog and the standard logging bridge once per process."""
    level_name = (level or os.environ.get("EXCHANGE_LOG_LEVEL", "INFO")).upper()
    numeric = logging.getLevelNamesMapping().get(level_name, logging.INFO)
    if json is None:
        json = not sys.stderr.isatty()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=False)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Look sys.stderr up per logger, not once: tests and daemons may replace the stream.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def get_logger(name: str, **bound: Any) -> Any:
    """A structlog logger named after its module, with optional bound context."""
    logger = structlog.get_logger(name)
    # Binding materialises the logger with the configuration of that moment; module-level
    # loggers stay lazy so that `configure` (called later, by the CLI) applies to them.
    return logger.bind(**bound) if bound else logger
