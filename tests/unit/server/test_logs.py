"""One line per event, as text or JSON, with the session/queue ids as extras."""

from __future__ import annotations

import json
import logging

from postier.server.logs import JsonFormatter, TextFormatter


def _record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("postier.smtp", logging.INFO, __file__, 1, msg, (), None)
    rec.__dict__.update(extra)
    return rec


def test_text_line_carries_extras_but_not_formatter_noise() -> None:
    line = TextFormatter().format(_record("sid=7 delivered", qid="Q1", color_message="x"))
    assert line.endswith(" INFO postier.smtp: sid=7 delivered qid=Q1")
    assert "\n" not in line


def test_json_line_is_one_object() -> None:
    out = json.loads(JsonFormatter().format(_record("sid=7 delivered", qid="Q1", n=3)))
    assert out["level"] == "info"
    assert out["logger"] == "postier.smtp"
    assert out["msg"] == "sid=7 delivered"
    assert (out["qid"], out["n"]) == ("Q1", 3)
    assert out["time"].endswith("+00:00")
