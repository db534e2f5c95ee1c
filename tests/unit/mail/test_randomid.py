"""Random ids without a system call each: unpredictable, never repeated, and a
forked worker never draws its parent's (or a sibling's) stream."""

from __future__ import annotations

import os
import re
import threading

from postier.mail import randomid
from postier.mail.queueid import is_qid, new_queue_id
from postier.store.blobs import is_blob_id, is_inline, new_blob_id, new_inline_id


def test_shapes_are_those_of_secrets() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", randomid.random_hex(16))
    assert len(randomid.random_bytes(7)) == 7
    bits = [randomid.random_bits(25) for _ in range(2000)]
    assert all(0 <= b < 2**25 for b in bits)
    assert max(bits) >= 2**24  # the top bit is used: not shifted away
    assert all(0 <= randomid.random_bits(1) <= 1 for _ in range(100))
    assert is_inline(new_inline_id()) and is_blob_id(new_blob_id())
    assert is_qid(new_queue_id())


def test_inline_ids_made_later_sort_later() -> None:
    """The store's b-trees keyed by inline ids then grow at their right edge."""
    ids = [new_inline_id() for _ in range(2000)]
    times = [i[1:15] for i in ids]
    assert times == sorted(times) and times[0] < times[-1]
    assert len(set(ids)) == len(ids)


def test_no_repeats_across_threads() -> None:
    got: list[str] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [randomid.random_hex(16) for _ in range(5000)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == len(got) == 20000


def test_a_forked_child_draws_another_stream() -> None:
    """Workers are forked from one supervisor: without a new key after fork, two
    workers would make the same ids in the same order (same key, same counter)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, "".join(randomid.random_hex(16) for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write)
    theirs = b""
    while chunk := os.read(read, 4096):
        theirs += chunk
    os.close(read)
    os.waitpid(pid, 0)
    ours = "".join(randomid.random_hex(16) for _ in range(3))
    assert len(theirs) == 96
    assert theirs.decode() != ours
    assert not set(re.findall("." * 32, theirs.decode())) & set(re.findall("." * 32, ours))
