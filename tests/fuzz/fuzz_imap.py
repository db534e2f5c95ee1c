"""Fuzz target ``imap``: the IMAP framing (postier/imap/receiver.py) and the command
parser (postier/imap/parse.py) on a client stream.

Input: one byte of options (`drivers.imap_limits`: tiny limits, LITERAL-; UTF8=ACCEPT;
refuse every second literal), then the bytes a client sends. The driver accepts
literals, enters IDLE and AUTHENTICATE modes as the session does, and parses every
framed command.

Allowed: `RawCommand`s that parse to a command or raise `ParseError`, `BadInput`
(framing errors), mode lines, `ConnectionClosed`. Checked: every error response is
one CRLF-terminated line; commands keep their tag; memory stays within the limits;
the stream ends in `ConnectionClosed`; the same stream cut in two at an input-chosen
point gives the same events and commands.
"""

from __future__ import annotations

import zlib

from tests.fuzz.drivers import drive_imap, imap_limits, parse_errors_equal


def check(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    limits = imap_limits(flags)
    utf8 = bool(flags & 0x04)
    refuse = 2 if flags & 0x08 else 0
    stream = data[1:]
    whole = drive_imap([stream], limits, utf8=utf8, refuse_every=refuse)
    cut = zlib.crc32(stream) % (len(stream) + 1)
    split = drive_imap([stream[:cut], stream[cut:]], limits, utf8=utf8, refuse_every=refuse)
    assert split.events == whole.events, "framing depends on packet boundaries"
    assert parse_errors_equal(split.commands, whole.commands)
    assert split.out == whole.out
