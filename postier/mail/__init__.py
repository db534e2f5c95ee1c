"""The nouns every layer shares (DESIGN.md: the bottom layer, importing no other
postier package): here the IMAP URL (RFC 5092), which IMAP (CATENATE, URLAUTH) and
SMTP submission (BURL, RFC 4468) both name messages with."""
