"""The web admin at /admin (routes.py)."""
