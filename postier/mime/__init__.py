"""Message parsing shared by IMAP (ENVELOPE, BODYSTRUCTURE, sections), POP3,
webmail and filters.

Entry points: `parse` (bytes → `Part` tree with octet offsets), `envelope`,
`bodystructure`, `Section` / `extract` / `binary`, `preview` and `summarize`;
at intake, `message.ParsedMessage`: the one parse of an incoming message that
the filters, DKIM, the header edits and its summary share.
"""

from postier.mime.address import Address, parse_address_list
from postier.mime.bodystructure import bodystructure
from postier.mime.encoding import UnknownEncoding, decode_charset, decode_transfer, decode_words
from postier.mime.envelope import envelope
from postier.mime.parse import Param, Part, parse
from postier.mime.preview import pick_text_part, preview
from postier.mime.sections import (
    Section,
    SectionError,
    SectionText,
    binary,
    binary_size,
    extract,
    partial,
    resolve,
)
from postier.mime.summary import summarize

__all__ = [
    "Address",
    "Param",
    "Part",
    "Section",
    "SectionError",
    "SectionText",
    "UnknownEncoding",
    "binary",
    "binary_size",
    "bodystructure",
    "decode_charset",
    "decode_transfer",
    "decode_words",
    "envelope",
    "extract",
    "parse",
    "parse_address_list",
    "partial",
    "pick_text_part",
    "preview",
    "resolve",
    "summarize",
]
