"""How every `helix` command writes its log lines: `text` for a terminal, or one JSON object a
line (`HELIX_LOG_FORMAT=json`) with `ts`, `level`, `logger`, `message` and the record's extra
fields, for a log pipeline. Every logger goes through the one root handler, aiohttp's and
asyncpg's included.

The access log (`helix.access`, one line per HTTP request, see `helix.api.middleware`) logs at
INFO whatever the root level, unless HELIX_ACCESS_LOG is off. No line carries a credential: the
access log names the path without its query string (where a stream token may travel) and never
a header, and an extra field whose name says it holds a secret is written as `[redacted]`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from helix.config import LogFormat

ACCESS_LOGGER = "helix.access"
REDACTED = "[redacted]"
# Extra fields never written as they are, whoever passes them.
SECRET_FIELD = re.compile(r"authorization|password|secret|token|api_?key|cookie", re.IGNORECASE)
# A LogRecord's own attributes: anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller added with `extra=`, secrets redacted."""
    return {
        name: REDACTED if SECRET_FIELD.search(name) else value
        for name, value in vars(record).items()
        if name not in _RECORD_ATTRIBUTES and not name.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(extra_fields(record))
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`<ts> <LEVEL> <logger>: <message>`, then the extra fields as `name=value`."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = extra_fields(record)
        if fields:
            text += " " + " ".join(f"{name}={value}" for name, value in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def configure(level: str, log_format: LogFormat, *, access_log: bool = True) -> None:
    """One handler on the root logger, to stderr, in the chosen format; replaces any other."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format is LogFormat.JSON else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)  # Python's warnings too, in the same format
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if access_log else logging.WARNING)
