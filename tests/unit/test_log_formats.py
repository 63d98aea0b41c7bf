"""The log formats: JSON lines with the record's extra fields, text with them as name=value,
and fields named for a secret redacted in both."""

from __future__ import annotations

import json
import logging

from helix.logs import REDACTED, JsonFormatter, TextFormatter


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord("helix.test", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_fields_and_extras_and_redacts_secret_ones() -> None:
    line = json.loads(
        JsonFormatter().format(record(route="/x/{id}", authorization="Bearer s3cret", api_key="k"))
    )

    assert line["message"] == "hello you"
    assert (line["level"], line["logger"], line["route"]) == ("INFO", "helix.test", "/x/{id}")
    assert line["ts"].endswith("Z")
    assert line["authorization"] == REDACTED and line["api_key"] == REDACTED
    assert "s3cret" not in json.dumps(line)


def test_a_text_line_ends_with_its_extras_and_redacts_secret_ones() -> None:
    text = TextFormatter().format(record(status=200, password="hunter2"))

    assert "INFO helix.test: hello you" in text
    assert "status=200" in text and f"password={REDACTED}" in text
    assert "hunter2" not in text
