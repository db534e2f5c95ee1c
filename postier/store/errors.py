"""Errors the store raises; callers turn them into protocol replies."""


class StoreError(Exception):
    """Base class; the message is fit to show an administrator."""


class NotFound(StoreError):
    """The domain, user, alias, mailbox or message does not exist."""


class Conflict(StoreError):
    """It exists already, or something depends on it."""


class Invalid(StoreError):
    """The request is malformed (bad name, INBOX deletion, ...)."""


class QuotaExceeded(StoreError):
    """The user's quota would be exceeded."""
