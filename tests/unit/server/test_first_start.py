"""Files made on first start are made once when several processes start together:
every process ends up with the same certificate and its own key matches it."""

from __future__ import annotations

import multiprocessing
import ssl
from pathlib import Path

from postier.mailauth import dkim
from postier.server.tls import ensure_self_signed

PROCESSES = 6


def _tls(
    directory: str, barrier: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    barrier.wait()
    cert, key = ensure_self_signed(Path(directory), "mail.example.test")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)  # KEY_VALUES_MISMATCH if paired with another's
    except ssl.SSLError as e:
        out.put(f"error {e}")
        return
    out.put(cert.read_text())


def _dkim(
    directory: str, barrier: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    barrier.wait()
    rsa, ed = dkim.generate_keys(Path(directory), "example.test", year=2026, rsa_bits=1024)
    out.put(rsa.private_pem + ed.private_pem)


def _race(target: object, directory: Path) -> list[object]:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(str(directory), barrier, out)) for _ in range(PROCESSES)
    ]  # type: ignore[arg-type]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return results


def test_processes_starting_together_make_one_certificate_and_key(tmp_path: Path) -> None:
    results = _race(_tls, tmp_path / "tls")
    assert not [r for r in results if str(r).startswith("error")], results
    assert len(set(results)) == 1  # one certificate, the one on disk
    assert results[0] == (tmp_path / "tls" / "cert.pem").read_text()


def test_processes_adding_a_domain_together_make_one_pair_of_dkim_keys(tmp_path: Path) -> None:
    results = _race(_dkim, tmp_path)
    assert len(set(results)) == 1
