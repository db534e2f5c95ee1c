"""A private Postfix instance for interop tests and benchmarks (Debian's `postfix`).

`PostfixInstance(ip, port, domain, relay)` writes a config directory of its own
(main.cf, master.cf) under a fresh folder in /tmp (Postfix's unprivileged
daemons must traverse it, which pytest's 0700 tmp_path forbids), then runs
``postfix -c DIR start``. It:
- listens on ip:port only (master.cf names the address; inet_interfaces stays
  127.0.0.1 because Postfix insists those exist on an interface);
- delivers mail for `domain` to maildirs under DIR/vmail (virtual(8)); every
  address of `users` exists;
- sends everything else to `relay` ("[ip]:port") — no DNS at all
  (smtp_dns_support_level = disabled, smtpd_peername_lookup = no);
- logs to DIR/maillog. `stop()` stops it and removes the folder.
Needs root (as the test suite runs in CI); the caller checks `postfix` exists.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

MASTER_CF = """\
{ip}:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class PostfixInstance:
    def __init__(
        self, ip: str, port: int, domain: str, relay: str, users: tuple[str, ...] = ()
    ) -> None:
        self.ip, self.port, self.domain, self.relay, self.users = ip, port, domain, relay, users
        self.dir = Path(tempfile.mkdtemp(prefix="postier-postfix-", dir="/tmp"))

    def start(self) -> PostfixInstance:
        d = self.dir
        os.chmod(d, 0o755)
        uid = pwd.getpwnam("postfix").pw_uid
        gid = grp.getgrnam("postfix").gr_gid
        for sub in ("conf", "spool", "data", "vmail"):
            (d / sub).mkdir()
        for sub in ("data", "vmail"):
            os.chown(d / sub, uid, gid)
        (d / "conf" / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
myhostname = mx.{self.domain}
mydomain = {self.domain}
myorigin = {self.domain}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
maillog_file_prefixes = /tmp
maillog_file = {d}/maillog
virtual_mailbox_domains = {self.domain}
virtual_mailbox_base = {d}/vmail
virtual_mailbox_maps = texthash:{d}/conf/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
relayhost = {self.relay}
alias_maps =
alias_database =
smtputf8_enable = yes
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_destination_concurrency_limit = 20
smtp_connection_cache_on_demand = yes
biff = no
""")
        (d / "conf" / "vmailbox").write_text(
            "".join(f"{u} {self.domain}/{u.split('@')[0]}/\n" for u in self.users)
        )
        (d / "conf" / "master.cf").write_text(MASTER_CF.format(ip=self.ip, port=self.port))
        subprocess.run(
            ["postfix", "-c", str(d / "conf"), "start"], check=True, capture_output=True, timeout=60
        )
        deadline = time.monotonic() + 15
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.ip, self.port), 1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"postfix did not start: {self.log()}")

    def maildir(self, user: str) -> list[bytes]:
        new = self.dir / "vmail" / self.domain / user / "new"
        return [p.read_bytes() for p in sorted(new.glob("*"))] if new.exists() else []

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        subprocess.run(
            ["postfix", "-c", str(self.dir / "conf"), "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(self.dir, ignore_errors=True)
