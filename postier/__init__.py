"""postier: a complete mail system (SMTP, outbound queue, IMAP, POP3, webmail)."""

__version__ = "0.1.0"
