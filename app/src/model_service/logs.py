"""One JSON object per line on stdout (journald keeps it): the access log and service events."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, Any

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class AccessLog:
    """The access log: one JSON line per request, as JsonFormatter writes it for ``model_service.access``,
    written straight to the stream (stdout unless given). Going through ``logging`` cost more per request
    than parsing, validating and answering it."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._second: tuple[int, str] = (-1, "")

    def write(self, fields: dict[str, Any]) -> None:
        now = time.time()
        second, stamp = self._second
        if int(now) != second:
            second = int(now)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, stamp)
        entry = {
            "ts": f"{stamp}.{int((now - second) * 1000):03d}Z",
            "level": "info",
            "logger": "model_service.access",
            "msg": "request",
            **fields,
        }
        line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE).decode()
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
