"""The run's log lines as text for people, or as JSON lines for a log shipper (`run.log_format`).

`run.log_format=jsonl`: every progress print and every event of a run (start, plan, live page,
finish) is one JSON object on one line of stderr, with `ts` (UTC, ISO 8601), `event` and the
event's own fields, so Fluent Bit, Vector or Loki's promtail read it without a parser of ours.
The values are the same as the text lines'; secrets never reach either (a backend's identity
and the redacted config carry none).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from curation.core.config import ConfigError

FORMATS = ("text", "jsonl")


class LogFormatError(ConfigError):
    """`run.log_format` names no format this module writes."""


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise LogFormatError(f"run.log_format={fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def line(event: str, **fields: Any) -> str:
    """One JSON object (one line, newline included) for `event`."""
    record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event, **fields}
    return json.dumps(record, ensure_ascii=False, default=str, separators=(",", ":")) + "\n"


class EventLog:
    """Where a run says what happens: `say(text, event, **fields)` prints the text line, or the event as JSON."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None):
        self.fmt = check_format(fmt)
        self.stream = stream

    def say(self, text: str, event: str, **fields: Any) -> None:
        stream = self.stream or sys.stderr  # looked up at call time: tests capture sys.stderr
        stream.write(line(event, **fields) if self.fmt == "jsonl" else text + "\n")
        stream.flush()
