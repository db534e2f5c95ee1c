"""One home for each SMTP reply (postier/mail/replies.py).

Why: intake once kept its own copies of replies with other texts (the 553 for a
sender the user does not own said one thing in `smtp/intake.py`, another in
`smtp/replies.py`), and the tests checked the copy production never sent.
Found from the source with `ast`: a reply name (``R553_NOT_OWNER``) is defined in
one module only, and no two definitions build the same code, enhanced code and text.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mail.replies import R451_LOCAL_ERROR, R553_NOT_OWNER, Reply

ROOT = Path(__file__).resolve().parents[3] / "postier"
_NAME = re.compile(r"R[0-9]{3}_[A-Z0-9_]+\Z")


def reply_definitions(root: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Module-level reply names -> where defined; reply contents -> where built."""
    names: dict[str, list[str]] = defaultdict(list)
    contents: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = str(path.relative_to(root.parent))
        for node in tree.body:
            targets: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                targets = [node.name]
            elif isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in targets:
                if _NAME.match(name):
                    names[name].append(f"{where}:{node.lineno}")
        for call in ast.walk(tree):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id in ("Reply", "_r")
                and len(call.args) == 3
                and isinstance(call.args[0], ast.Constant)
            ):
                key = ", ".join(ast.unparse(a) for a in call.args)
                contents[key].append(f"{where}:{call.lineno}")
    return names, contents


def test_each_reply_is_defined_once() -> None:
    names, contents = reply_definitions(ROOT)
    assert "R553_NOT_OWNER" in names  # the scan sees the replies module
    twice = {n: w for n, w in names.items() if len(w) > 1}
    assert not twice, twice
    same = {c: w for c, w in contents.items() if len(w) > 1}
    assert not same, same


def test_the_scan_finds_a_second_definition(tmp_path: Path) -> None:
    pkg = tmp_path / "postier"
    (pkg / "a").mkdir(parents=True)
    (pkg / "a" / "x.py").write_text(
        'R550_X = Reply(550, "5.1.1", "no")\ndef R551_Y(a):\n    return _r(551, None, f"{a}")\n'
    )
    (pkg / "b.py").write_text('R550_X = Reply(550, "5.1.1", "no")\n')
    names, contents = reply_definitions(pkg)
    assert names["R550_X"] == ["postier/a/x.py:1", "postier/b.py:1"]
    assert names["R551_Y"] == ["postier/a/x.py:2"]
    assert contents["550, '5.1.1', 'no'"] == ["postier/a/x.py:1", "postier/b.py:1"]


def test_the_texts_intake_sends() -> None:
    # what a submission client reads for a MAIL FROM it does not own, and for a
    # store failure at end of data (tests/integration/test_smtp.py sees the first)
    assert R553_NOT_OWNER("bob@example.test").to_bytes() == (
        b"553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user\r\n"
    )
    assert (
        R451_LOCAL_ERROR.to_bytes() == b"451 4.3.0 Local error in processing, try again later\r\n"
    )


def _wire_reference(code: int, enhanced: str | None, text: str) -> bytes:
    """The general formatting, line by line (the one-line fast path must agree)."""
    lines = text.split("\n")
    prefix = f"{enhanced} " if enhanced else ""
    out = []
    for i, line in enumerate(lines):
        sep = " " if i == len(lines) - 1 else "-"
        clean = re.sub(r"[^\x20-\x7e]", "?", line.rstrip("\r"))
        out.append(f"{code}{sep}{prefix}{clean}\r\n")
    return "".join(out).encode("ascii")


@settings(max_examples=300)
@given(
    st.sampled_from([250, 354, 451, 550]),
    st.sampled_from([None, "2.0.0", "5.1.1"]),
    st.text(alphabet=st.sampled_from(["a", " ", "\t", "\r", "\n", "\x7f", "é", "~", "\x00"])),
)
def test_the_one_line_path_formats_as_the_general_one(
    code: int, enhanced: str | None, text: str
) -> None:
    reply = Reply(code, enhanced, text)
    assert reply.to_bytes() == _wire_reference(code, enhanced, text)
    assert reply.to_bytes() is reply.to_bytes()  # worked out once
