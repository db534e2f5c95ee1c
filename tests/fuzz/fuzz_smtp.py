"""Fuzz target ``smtp``: the SMTP server core (postier/smtp/core.py) on a client stream.

Input: one byte of core options (`drivers.smtp_options`: bare-LF mode, TLS, AUTH,
BINARYMIME, small limits), then the bytes a client sends. The scripted adapter
(`drivers.drive_smtp`) answers every decision.

Allowed: replies and events. Checked: every output octet belongs to a well-formed
reply line; the session ends after EOF; buffers stay bounded; an accepted DATA
message has no bare CR or LF and fits the size limit; the same stream cut in two at
an input-chosen point gives the same replies and events (except around STARTTLS,
which by design drops what was pipelined behind it).
"""

from __future__ import annotations

import zlib

from tests.fuzz.drivers import check_smtp_output, drive_smtp, merged, smtp_options


def check(data: bytes) -> None:
    if not data:
        return
    options = smtp_options(data[0])
    stream = data[1:]
    whole = drive_smtp([stream], options)
    check_smtp_output(whole.out)
    for chunking, message in whole.messages:
        assert len(message) <= options["max_message_size"]
        if not chunking:  # RFC 5321 §2.3.8: DATA never delivers a bare CR or LF
            crlf = message.count(b"\r\n")
            assert message.count(b"\r") == crlf and message.count(b"\n") == crlf
    cut = zlib.crc32(stream) % (len(stream) + 1)
    split = drive_smtp([stream[:cut], stream[cut:]], options)
    if not whole.starttls and not split.starttls:
        assert split.out == whole.out, "replies depend on packet boundaries"
        assert merged(split.events) == merged(whole.events), "events depend on packets"
