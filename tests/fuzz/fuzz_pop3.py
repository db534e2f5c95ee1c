"""Fuzz target ``pop3``: the POP3 server core (postier/pop3/core.py) on a client stream.

Input: one byte of core options (`drivers.pop3_options`: plaintext allowed, STLS,
small line limits), then the bytes a client sends. The scripted adapter
(`drivers.drive_pop3`) logs alice/secret in to a maildrop of three messages.

Allowed: responses and hook events. Checked: the output starts with the greeting,
has no bare CR or LF and ends with CRLF; the session closes after EOF; the buffer
holds at most one line; the same stream cut in two at an input-chosen point gives
the same output (except around STLS, which drops what was pipelined behind it).
"""

from __future__ import annotations

import zlib

from tests.fuzz.drivers import check_pop3_output, drive_pop3, pop3_options


def check(data: bytes) -> None:
    if not data:
        return
    options = pop3_options(data[0])
    stream = data[1:]
    whole = drive_pop3([stream], options)
    check_pop3_output(whole)
    cut = zlib.crc32(stream) % (len(stream) + 1)
    split = drive_pop3([stream[:cut], stream[cut:]], options)
    check_pop3_output(split)
    if b"STLS" not in stream.upper():
        assert split == whole, "responses depend on packet boundaries"
