"""postier.mailauth: sender authentication — SPF (spf.py, RFC 7208); DKIM, DMARC,
ARC and Authentication-Results live beside it."""
