"""SMTP load cut by a SIGKILL: the shape every crash test of intake shares.

`send_then_kill` sends numbered messages over concurrent connections, kills the
server once a third of them have their 250, and returns the numbers acknowledged:
exactly the messages the server promised to keep (rule zero). A message whose
transaction the kill cut has no 250 and no promise.
"""

from __future__ import annotations

import contextlib
import smtplib
import threading
import time
from collections.abc import Callable


def send_then_kill(
    port: int,
    *,
    messages: int,
    connections: int,
    message: Callable[[int], bytes],
    kill: Callable[[], object],
    recipient: str = "alice@example.test",
    timeout: float = 30,
) -> list[int]:
    acked: list[int] = []
    lock = threading.Lock()
    counter = iter(range(messages))

    def sender() -> None:
        try:
            c = smtplib.SMTP("127.0.0.1", port, timeout=timeout)
        except OSError:
            return
        try:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                try:
                    c.sendmail("s@remote.test", [recipient], message(n))
                except (smtplib.SMTPException, OSError):
                    return  # killed mid-transaction: no 250, no promise
                with lock:
                    acked.append(n)
        finally:
            with contextlib.suppress(OSError):
                c.close()

    threads = [threading.Thread(target=sender) for _ in range(connections)]
    for t in threads:
        t.start()
    # kill once a good part of the load is acknowledged, while the rest is in flight
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= messages // 3:
                break
        time.sleep(0.005)
    kill()
    for t in threads:
        t.join(30)
    assert messages // 3 <= len(acked) < messages, "the kill must fall mid-stream"
    return acked
