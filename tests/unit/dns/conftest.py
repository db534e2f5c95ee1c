from tests.support.dnsserver import dns_server  # noqa: F401  (pytest fixture)
