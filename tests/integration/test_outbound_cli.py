"""`postier queue ...`, `postier trace QID` and `postier domain dns D` on a real store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from postier.cli.main import main
from postier.mail.queueid import QueueId
from postier.store.models import NewQueueEntry, QueueRecipient, RcptState
from postier.store.sqlite import SqliteStore
from tests.support.messages import new_message
from tests.support.server import write_config


async def _setup(data_dir: Path) -> QueueId:
    store = SqliteStore(data_dir)
    await store.open()
    try:
        res = await store.deliver(
            new_message(b"Subject: x\r\n\r\nhi\r\n"),
            [],
            queue=NewQueueEntry(
                "alice@a.test",
                (
                    QueueRecipient("bob@b.test"),
                    QueueRecipient("carol@c.test", state=RcptState.PENDING),
                ),
            ),
        )
        assert res.queued is not None
        entry = await store.queue_get(res.queued)
        assert entry is not None
        await store.queue_update(
            res.queued,
            (
                QueueRecipient("bob@b.test", RcptState.DELIVERED, "250 2.0.0 Ok (host mx.b.test)"),
                QueueRecipient("carol@c.test", RcptState.PENDING, "451 4.7.1 Greylisted"),
            ),
            next_attempt=entry.created.replace(year=entry.created.year + 1),
            attempts=1,
            last_error="451 4.7.1 Greylisted",
        )
        await store.trace_add(res.queued, "received", "from=<alice@a.test> to=bob@b.test")
        return res.queued
    finally:
        await store.close()


@pytest.fixture
def qid(tmp_path: Path) -> QueueId:
    write_config(tmp_path)
    return asyncio.run(_setup(tmp_path / "data"))


def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-c", str(tmp_path / "postier.toml"), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_queue_list_show_hold_flush_delete(
    tmp_path: Path, qid: QueueId, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(tmp_path, capsys, "queue", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{qid}  age   0s")
    assert "next in 364d" in lines[0] or "next in 365d" in lines[0]
    assert lines[0].endswith("tries 1  from <alice@a.test>")
    assert lines[1:] == [
        "    <bob@b.test>  delivered  250 2.0.0 Ok (host mx.b.test)",
        "    <carol@c.test>  pending  451 4.7.1 Greylisted",
        "-- 1 message(s), 1 recipient(s) pending",
    ]
    code, out, _ = cli(tmp_path, capsys, "queue", "show", qid, "--json")
    doc = json.loads(out)
    assert (doc["qid"], doc["attempts"], doc["last_error"]) == (qid, 1, "451 4.7.1 Greylisted")
    assert [r["state"] for r in doc["recipients"]] == ["delivered", "pending"]
    assert cli(tmp_path, capsys, "queue", "hold", qid)[1] == f"held {qid}\n"
    assert "next held" in cli(tmp_path, capsys, "queue", "list")[1]
    assert cli(tmp_path, capsys, "queue", "flush")[1] == (
        "0 message(s) due now; 1 held, not flushed (postier queue release QID)\n"
    )
    assert cli(tmp_path, capsys, "queue", "flush", qid) == (
        2,
        "",
        f"postier: {qid} is held: nothing sent (release it first: postier queue release {qid})\n",
    )
    assert "next held" in cli(tmp_path, capsys, "queue", "list")[1]
    assert cli(tmp_path, capsys, "queue", "release", qid)[1] == f"released {qid}\n"
    assert cli(tmp_path, capsys, "queue", "flush", qid)[1] == "1 message(s) due now\n"
    assert "next now" in cli(tmp_path, capsys, "queue", "list")[1]
    code, out, _ = cli(tmp_path, capsys, "trace", qid)
    assert out.splitlines()[0] == f"message {qid}"
    assert "received      from=<alice@a.test> to=bob@b.test" in out
    assert "release       release by the administrator" in out
    assert out.splitlines()[-1].startswith("state: queued, 1 recipient(s) pending, next try ")
    assert cli(tmp_path, capsys, "queue", "delete", qid) == (
        2,
        "",
        f"postier: delete {qid} from <alice@a.test> with 1 recipient(s) pending, without "
        "a bounce?: not confirmed (no terminal to ask on; add --yes)\n",
    )
    assert cli(tmp_path, capsys, "queue", "delete", qid, "--yes")[1] == f"deleted {qid}\n"
    assert cli(tmp_path, capsys, "queue", "list")[1] == "-- 0 message(s), 0 recipient(s) pending\n"
    assert cli(tmp_path, capsys, "trace", qid)[1].splitlines()[-1] == "state: no longer queued"


def test_queue_errors(tmp_path: Path, qid: QueueId, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, capsys, "queue", "show", "nope") == (
        2,
        "",
        "postier: malformed queue id 'nope' (16 characters like 0ABCDEFGHJKMNPQR)\n",
    )
    other = "0" * 16
    assert cli(tmp_path, capsys, "queue", "delete", other) == (
        2,
        "",
        f"postier: no queued message {other}\n",
    )
    assert cli(tmp_path, capsys, "trace", other) == (
        2,
        "",
        f"postier: nothing known about {other}\n",
    )


def test_domain_add_makes_dkim_keys_and_dns_prints_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(tmp_path)
    assert cli(tmp_path, capsys, "domain", "add", "k.test")[0] == 0
    code, out, _ = cli(tmp_path, capsys, "domain", "dns", "k.test", "--json")
    assert code == 0
    doc = json.loads(out)
    types = [(r["name"], r["type"]) for r in doc["records"]]
    year_sel = [n for n, t in types if n.endswith("._domainkey.k.test.")]
    assert len(year_sel) == 2
    assert types[:2] == [("k.test.", "MX"), ("k.test.", "TXT")]
    assert doc["records"][0]["value"] == "10 mail.example.test."
    assert doc["records"][1]["value"] == '"v=spf1 mx -all"'
    assert ("_dmarc.k.test.", "TXT") in types
    rsa = next(
        r
        for r in doc["records"]
        if r["name"].startswith(year_sel[0][:11]) and "k=rsa" in r["value"]
    )
    assert rsa["value"].startswith('"v=DKIM1; k=rsa; h=sha256; p=MIIBIjAN')
    assert '" "' in rsa["value"]  # split into 255-octet strings
    code, out, _ = cli(tmp_path, capsys, "domain", "dns", "k.test")
    assert "k.test.\t3600\tIN\tMX\t10 mail.example.test." in out.splitlines()
    assert cli(tmp_path, capsys, "domain", "dns", "none.test")[0] == 2
