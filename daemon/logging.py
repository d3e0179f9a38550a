"""The daemon's log: structlog, configured once, to stdout.

JSON lines for journald, docker and log shippers; a readable console format when a person is watching
a terminal. Secrets are kept out by construction (config `Secret` never prints itself); the masking
processor here is a second line of defence against a key someone logs by mistake.
"""
from __future__ import annotations

import functools
import logging
import re
import sys
from typing import Any, MutableMapping, TextIO

import structlog

# The store's encoder (orjson, the standard library for what orjson refuses): the standard library's alone
# was a third of what a log line cost, and the daemon writes one per decision.
from daemon.store.types import json_dumps

SECRET_KEY = re.compile(r"token|secret|password|passwd|authorization|api_key|apikey|credential|cookie", re.IGNORECASE)
MASK = "***"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@functools.lru_cache(maxsize=4096)
def _secret(key: str) -> bool:
    # Lines name the same few dozen keys over and over: one regex search per key name, not per line
    # (the search was a third of what the line per decision cost).
    return bool(SECRET_KEY.search(key))


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and _secret(k) else _mask(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if not any(isinstance(v, (dict, list, tuple)) for v in value):
            return value  # nothing in it has a key
        return [_mask(v) for v in value]
    return value


def mask_secrets(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any key named like a secret (token, secret, password, authorization...),
    at any depth, with '***'."""
    for key, value in event.items():
        if _secret(key):
            event[key] = MASK
        elif isinstance(value, (dict, list, tuple)):
            event[key] = _mask(value)
    return event


def configure_logging(format: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog, and the standard library's loggers (APScheduler, httpx) with the same renderer,
    so that every line on stdout has one format. Safe to call again (tests, reconfigure)."""
    stream = stream or sys.stdout
    console = format == "console" or (format == "auto" and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
    ]
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=stream.isatty()) if console
                     else structlog.processors.JSONRenderer(serializer=json_dumps))
    # ordersync's own lines go straight from structlog to the stream: through the standard library's
    # logging they cost several times as much, and the daemon writes one per decision.
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info if not console else structlog.dev.set_exc_info,
                    renderer],
        logger_factory=structlog.WriteLoggerFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        cache_logger_on_first_use=False,
    )
    # The libraries' lines (APScheduler, httpx) come through the standard library, rendered the same way.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_ordersync", False):
            root.removeHandler(old)
    handler._ordersync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    # APScheduler logs every run at INFO; the service logs its own line per run with duration and outcome.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def get_logger(name: str = "ordersync") -> Any:
    return structlog.get_logger(name)
