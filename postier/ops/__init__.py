"""postier.ops: the logic behind the operator commands (mx, verify, dns-check,
send, import/export); the `postier.cli` modules stay thin."""
