"""Logging: one line per event, as text or JSON, with the session or queue id.

Rules:
- Modules log through `logging.getLogger("postier.<package>")` and put the
  session id (``sid=``) or queue id (``qid=``) in the message or in `extra`.
- `--log-format json` prints one JSON object per line: time, level, logger,
  message and every `extra` field; nothing else goes to stderr.
- A worker of several tags every line with ``worker=N`` (`tag_worker`): session
  ids are counted per process, so two workers may both have a ``sid=1f``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

# attributes every record has, plus what formatters and uvicorn add: not "extras"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v if isinstance(v, str | int | float | bool | None) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        )
        return f"{line} {extras}" if extras else line


def setup(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # third-party chatter stays at warning
    for name in ("asyncio", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _WorkerTag(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def tag_worker(index: int) -> None:
    """Every line this process logs from now on carries ``worker=index``."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(index))
