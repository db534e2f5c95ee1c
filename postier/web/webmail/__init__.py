"""The webmail: login, folders, message list and reader, server-rendered (Jinja2)."""
