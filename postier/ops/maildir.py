"""Maildir trees on disk: finding the folders and messages of one, and writing one.

What it owns: the file-level Maildir format (cr.yp.to/proto/maildir.html) with
the Maildir++ folder convention of Courier and Dovecot, as `postier import` reads
it and `postier export` writes it. The store is not touched here (`migrate.py`).

Rules (reading):
- A folder is a directory holding ``cur/`` (``new/`` and ``tmp/`` may be missing,
  as some tools leave them out). Messages are the files of ``new/`` and ``cur/``;
  ``tmp/`` is never read (unfinished deliveries), nor are dot-files.
- Layouts, told apart per directory, so mixed trees work too:
  Maildir++ (Dovecot/Courier default, mbsync ``SubFolders Maildir++``): the root
  is INBOX, ``.Work.2024`` is ``Work/2024``; fs (Dovecot ``LAYOUT=fs``, mbsync
  ``SubFolders Verbatim``): nested directories ``Work/2024/cur``, a top-level
  ``INBOX`` directory (any case) is INBOX; mbsync ``SubFolders Legacy``
  (``Work/.2024``): a leading dot of a nested directory is dropped.
- Folder name parts are modified UTF-7 (RFC 3501 §5.1.3) as Dovecot writes them,
  with Dovecot's listescape sequences ``\\2e`` (".") and ``\\5c`` ("\\") undone;
  a part that is not valid modified UTF-7 is taken as written (UTF-8 on disk).
- Flags come from the info suffix ``:2,<letters>`` (``;`` and ``!`` are accepted
  as the separator too, as on file systems without ":"): D \\Draft, F \\Flagged,
  P $Forwarded, R \\Answered, S \\Seen, T \\Deleted; lower-case letters are
  keywords named by the folder's ``dovecot-keywords`` file ("0 $Junk" lines).
  A message in ``new/`` has no flags. Unknown letters are ignored.
- INTERNALDATE is the file's modification time (Dovecot keeps the received date
  there). Messages are listed in file-name order (delivery time for every
  common naming scheme), ``new/`` and ``cur/`` merged.
- Bytes: a file with bare LF line ends (the usual Maildir storage) is converted
  to CRLF (RFC 5322 §2.1, what IMAP serves); CRLF files are kept byte for byte.
- Symbolic links are not followed and the walk stops at `max_depth`, so a
  looping or hostile tree ends.

Rules (writing):
- Maildir++ layout (the one every IMAP server imports): INBOX at the root, other
  folders as ``.<part>.<part>`` with the encoding above; ``subscriptions`` lists
  subscribed folders, ``dovecot-keywords`` names keyword letters (a-z, at most 26
  per folder: more keywords than that are not representable and are reported).
- Every message goes to ``cur/`` with its flags in the name, through ``tmp/``:
  write, fsync, rename (the Maildir delivery protocol), then the mtime is set to
  its internal date. The bytes are the store's, unchanged.

Why hand-written: the stdlib `mailbox.Maildir` knows only the Maildir++ layout,
reads messages through `email` (re-encoding line ends on write), ignores
``dovecot-keywords`` and picks its own file names; what is needed is small.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from postier.durable import fsync_dir
from postier.imap import utf7

#: info letters (maildir.html "Info semantics"), in the ASCII order they are written
FLAG_LETTERS: dict[str, str] = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
LETTER_OF_FLAG = {flag.lower(): letter for letter, flag in FLAG_LETTERS.items()}

KEYWORDS_FILE = "dovecot-keywords"
SUBSCRIPTIONS_FILE = "subscriptions"
MAX_KEYWORD_LETTERS = 26  # a-z

_INFO = re.compile(r"[:;!]2,([A-Za-z]*)$")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_LONE_CR = re.compile(rb"\r(?!\n)")


class MaildirError(Exception):
    """The source is not a Maildir tree, or a folder cannot be written."""


@dataclass(frozen=True)
class Folder:
    name: str  # postier mailbox name ("/" delimiter; "INBOX")
    path: Path


@dataclass(frozen=True)
class MaildirMessage:
    folder: str
    path: Path
    flags: frozenset[str]
    internal_date: datetime
    size: int  # on disk (before any LF → CRLF conversion)


# --- names -------------------------------------------------------------------------


def _unescape(part: str) -> str:
    return (
        part.replace("\\2e", ".").replace("\\2E", ".").replace("\\5c", "\\").replace("\\5C", "\\")
    )


def _escape(part: str) -> str:
    return part.replace("\\", "\\5c").replace(".", "\\2e")


def decode_part(part: str) -> str:
    """One folder-name part as found on disk → its Unicode form."""
    try:
        return _unescape(utf7.decode(part))
    except ValueError:
        return _unescape(part)


def encode_part(part: str) -> str:
    """One mailbox-name part → the on-disk form (listescape, then modified UTF-7)."""
    return utf7.encode(_escape(part))


def folder_dir_name(name: str) -> str:
    """Mailbox name → Maildir++ directory name ("" for INBOX)."""
    if name.upper() == "INBOX":
        return ""
    return "." + ".".join(encode_part(p) for p in name.split("/"))


def _canonical(name: str) -> str:
    first, sep, rest = name.partition("/")
    return "INBOX" + sep + rest if first.upper() == "INBOX" else name


# --- reading -----------------------------------------------------------------------


def is_maildir(path: Path) -> bool:
    return not path.is_symlink() and (path / "cur").is_dir()


def find_folders(root: Path, *, max_depth: int = 16) -> list[Folder]:
    """Every folder of the tree at `root`, INBOX first, then by name."""
    if not root.is_dir():
        raise MaildirError(f"{root}: not a directory")
    found: dict[str, Path] = {}
    if is_maildir(root):
        found["INBOX"] = root

    def walk(directory: Path, parts: list[str], depth: int) -> None:
        if depth > max_depth:
            return
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            raise MaildirError(f"{directory}: {e.strerror}") from None
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False) or entry.name in ("cur", "new", "tmp"):
                continue
            path = Path(entry.path)
            if entry.name.startswith(".") and not parts:
                if entry.name in (".", "..") or len(entry.name) < 2:
                    continue
                # Maildir++: ".A.B" directly under the root
                if is_maildir(path):
                    name = "/".join(decode_part(p) for p in entry.name[1:].split("."))
                    found.setdefault(_canonical(name), path)
                continue
            part = decode_part(entry.name[1:] if entry.name.startswith(".") else entry.name)
            here = [*parts, part]
            if is_maildir(path):
                found.setdefault(_canonical("/".join(here)), path)
            walk(path, here, depth + 1)

    walk(root, [], 0)
    if not found:
        raise MaildirError(f"{root}: no Maildir folder (a directory with cur/) found")
    return [Folder(n, found[n]) for n in sorted(found, key=lambda n: (n != "INBOX", n))]


def read_keywords(folder: Path) -> dict[str, str]:
    """``dovecot-keywords``: letter → keyword ("0 $Junk" → {"a": "$Junk"})."""
    out: dict[str, str] = {}
    try:
        text = (folder / KEYWORDS_FILE).read_text("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        index, _, keyword = line.strip().partition(" ")
        keyword = keyword.strip()
        if index.isdigit() and int(index) < MAX_KEYWORD_LETTERS and keyword:
            out[chr(ord("a") + int(index))] = keyword
    return out


def parse_flags(filename: str, keywords: dict[str, str]) -> frozenset[str]:
    """Flags from the info suffix of a file name in cur/."""
    m = _INFO.search(filename)
    if not m:
        return frozenset()
    flags: set[str] = set()
    for letter in m.group(1):
        if letter in FLAG_LETTERS:
            flags.add(FLAG_LETTERS[letter])
        elif letter in keywords:
            flags.add(keywords[letter])
    return frozenset(flags)


def list_messages(folder: Folder) -> Iterator[MaildirMessage]:
    """The messages of one folder, in file-name order, with their flags and dates."""
    keywords = read_keywords(folder.path)
    files: list[tuple[str, Path, bool]] = []
    for sub in ("new", "cur"):
        d = folder.path / sub
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue
        except OSError as e:
            raise MaildirError(f"{d}: {e.strerror}") from None
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            files.append((entry.name, Path(entry.path), sub == "cur"))
    for name, path, in_cur in sorted(files, key=lambda f: f[0]):
        try:
            st = path.stat()
        except OSError:
            continue  # moved away by a client while we were listing: not an error
        if not stat.S_ISREG(st.st_mode):
            continue
        flags = parse_flags(name, keywords) if in_cur else frozenset()
        yield MaildirMessage(
            folder.name, path, flags, datetime.fromtimestamp(st.st_mtime, UTC), st.st_size
        )


def to_crlf(data: bytes) -> bytes:
    """Line ends as CRLF (RFC 5322 §2.1); bytes already in CRLF are returned as is."""
    if b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b""):
        return data
    return _BARE_LF.sub(b"\r\n", _LONE_CR.sub(b"\r\n", data))


def read_message(path: Path) -> bytes:
    return to_crlf(path.read_bytes())


# --- writing -----------------------------------------------------------------------


def _host_part(hostname: str) -> str:
    # maildir.html: "/" and ":" in the host name are written \057 and \072
    return hostname.replace("/", "\\057").replace(":", "\\072") or "localhost"


class MaildirWriter:
    """Writes a Maildir++ tree at `root` (created if missing). Blocking: use a thread."""

    def __init__(self, root: Path, hostname: str | None = None) -> None:
        self.root = root
        self.host = _host_part(hostname or socket.gethostname())
        self._seq = 0
        self._keywords: dict[Path, dict[str, str]] = {}  # folder → keyword → letter
        self.unrepresentable: set[str] = set()  # keywords beyond the 26 letters

    def folder(self, name: str) -> Path:
        """Create the folder's cur/new/tmp; returns its directory."""
        path = self.root / folder_dir_name(name)
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        if name.upper() != "INBOX":
            (path / "maildirfolder").touch()  # Maildir++: marks a subfolder (Courier)
        return path

    def _letters(self, folder: Path, flags: frozenset[str]) -> str:
        letters: list[str] = []
        kw = self._keywords.setdefault(folder, {})
        for flag in flags:
            letter = LETTER_OF_FLAG.get(flag.lower())
            if letter is not None:
                letters.append(letter)
            elif not flag.startswith("\\"):
                if flag not in kw:
                    if len(kw) >= MAX_KEYWORD_LETTERS:
                        self.unrepresentable.add(flag)
                        continue
                    kw[flag] = chr(ord("a") + len(kw))
                letters.append(kw[flag])
        return "".join(sorted(letters))  # maildir.html: letters in ASCII order

    def write(
        self, folder: Path, data: bytes, flags: frozenset[str], internal_date: datetime
    ) -> Path:
        """One message into `folder`/cur, durable when this returns."""
        self._seq += 1
        ts = internal_date.timestamp()
        base = (
            f"{int(ts)}.M{int(time.time() * 1e6) % 1_000_000}P{os.getpid()}"
            f"Q{self._seq}R{secrets.token_hex(4)}.{self.host},S={len(data)}"
        )
        tmp = folder / "tmp" / base
        final = folder / "cur" / f"{base}:2,{self._letters(folder, flags)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.utime(tmp, (ts, ts))
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def finish_folder(self, folder: Path) -> None:
        """Write the folder's dovecot-keywords and make its renames durable."""
        kw = self._keywords.get(folder)
        if kw:
            lines = [f"{ord(letter) - ord('a')} {name}" for name, letter in kw.items()]
            _write_file(folder / KEYWORDS_FILE, "\n".join(lines) + "\n")
        fsync_dir(folder / "cur")
        fsync_dir(folder)

    def write_subscriptions(self, names: list[str]) -> None:
        """Dovecot's (version 1) Maildir++ ``subscriptions``: one name a line, the
        folder directory name without its leading dot ("Work.2024"; "INBOX")."""
        lines = [folder_dir_name(n)[1:] or "INBOX" for n in names]
        _write_file(self.root / SUBSCRIPTIONS_FILE, "".join(f"{n}\n" for n in lines))
        fsync_dir(self.root)


def _write_file(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
