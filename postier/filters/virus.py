"""The built-in virus scanner: EICAR, executables and scripts, inside zips too.

Not a replacement for an engine with signatures (see `clamd`): it stops what
needs no signature database — the EICAR test file, Windows/ELF/Mach-O
executables and script attachments (by content and by file name, double
extensions included) — at any depth of zip archives, without being the zip
bomb's victim.

Rules:
- Every MIME part is decoded (base64, quoted-printable) and looked at; so is
  the undecoded message (EICAR pasted in a body).
- Archives are read member by member through `zipfile`, never extracted to
  disk. Limits, each a constructor parameter: nesting depth (`max_depth`),
  members per archive (`max_members`), bytes unpacked per message
  (`max_unpacked`), and compression ratio per member (`max_ratio`, checked on
  the bytes actually produced, as they are produced, so a lying header does
  not help). Crossing one is the finding "Heuristics.Zip.Bomb".
- Findings are signature names (ClamAV style); the first one refuses the
  message with ``554 5.7.1`` naming it. Encrypted members cannot be read and
  are not judged by content (their names still are).
- Every message is scanned, whatever `filters.max_scan_size` says (that limit
  is for the text stages): a large one is read from the spool in the worker
  thread, whole (the MIME walk needs it; at most `smtp.limits.max_message_size`,
  and the scan pool bounds how many at once). The scan runs off the event loop
  with the `filters.scan_timeout` budget, checked between parts and members.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postier.filters.pipeline import Context, Phase, Verdict
from postier.mail.replies import Reply
from postier.mime.encoding import UnknownEncoding, decode_transfer
from postier.mime.message import ParsedMessage
from postier.offload import Budget

# The EICAR test file (https://www.eicar.org/download-anti-malware-testfile/)
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

#: extensions of files Windows (or a shell) runs when opened
DANGEROUS_EXTENSIONS = frozenset(
    {
        "exe",
        "com",
        "scr",
        "pif",
        "bat",
        "cmd",
        "cpl",
        "dll",
        "msi",
        "msp",
        "jar",
        "js",
        "jse",
        "vbs",
        "vbe",
        "wsf",
        "wsh",
        "wsc",
        "hta",
        "ps1",
        "psm1",
        "lnk",
        "reg",
        "scf",
        "vb",
        "inf",
        "application",
        "gadget",
        "msc",
        "iso",
        "img",
    }
)

_DOUBLE = re.compile(r"\.([a-z0-9]{2,5})\s*\.([a-z0-9]{2,11})$", re.IGNORECASE)


def R554_VIRUS(signature: str) -> Reply:
    return Reply(554, "5.7.1", f"Message rejected: infected with {signature}")


class ZipBomb(Exception):
    pass


@dataclass
class _Budget:
    unpacked: int
    check: Callable[[], None] = lambda: None  # the time budget: raises when spent


def content_signature(data: bytes, *, eicar_free: bool = False) -> str | None:
    """A finding from the bytes of one file, or None. `eicar_free`: the caller
    knows `data` holds no EICAR string (a piece of bytes already searched)."""
    # EICAR: the file starts with the string, maybe after white space (EICAR spec
    # allows trailing white space); we accept it anywhere in a part, as engines do
    if not eicar_free and EICAR in data:
        return "Eicar-Test-Signature"
    if data[:2] == b"MZ" and len(data) >= 0x40:
        pe = int.from_bytes(data[0x3C:0x40], "little")
        if data[pe : pe + 4] == b"PE\0\0" or pe == 0:
            return "Executable.Windows.PE"
        return "Executable.Windows.MZ"
    if data[:4] == b"\x7fELF":
        return "Executable.ELF"
    if data[:4] in (
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
    ):
        return "Executable.MachO"
    return None


def name_signature(filename: str) -> str | None:
    name = filename.strip().strip(".").lower()
    if not name:
        return None
    m = _DOUBLE.search(name)
    if m and m.group(2) in DANGEROUS_EXTENSIONS and m.group(1) not in DANGEROUS_EXTENSIONS:
        return f"Heuristics.DoubleExtension.{m.group(1)}.{m.group(2)}"
    ext = name.rpartition(".")[2] if "." in name else ""
    if ext in DANGEROUS_EXTENSIONS:
        return f"Executable.Attachment.{ext}"
    return None


class Scanner:
    def __init__(
        self,
        *,
        block_executables: bool = True,
        max_depth: int = 3,
        max_members: int = 1000,
        max_unpacked: int = 100 * 1024 * 1024,
        max_ratio: int = 200,
    ) -> None:
        self.block_executables = block_executables
        self.max_depth = max_depth
        self.max_members = max_members
        self.max_unpacked = max_unpacked
        self.max_ratio = max_ratio

    def scan_message(
        self,
        message: bytes | ParsedMessage,
        check: Callable[[], None] = lambda: None,
    ) -> str | None:
        """The first finding in a whole message, or None when it is clean.
        `check` is called between parts and members (it raises to stop)."""
        parsed = message if isinstance(message, ParsedMessage) else ParsedMessage.of(message)
        message = parsed.data
        if EICAR in message:
            return "Eicar-Test-Signature"
        budget = _Budget(0, check)
        # postier.mime: offsets into the bytes, no copy of the message per part
        for part in parsed.root.walk():
            check()
            if part.is_multipart or part.message is not None:
                continue  # containers: their leaves come next in the walk
            filename = part.filename or ""
            raw = message[part.body_start : part.body_end]
            try:
                data = decode_transfer(raw, part.cte)
            except UnknownEncoding:
                data = raw
            # undecoded (7bit, 8bit, binary), the part is a piece of the message
            # searched above: not searched again (a memmem over the whole body)
            found = self.scan_file(filename, data, depth=0, budget=budget, eicar_free=data is raw)
            if found:
                return found
        return None

    def scan_file(
        self,
        filename: str,
        data: bytes,
        *,
        depth: int,
        budget: _Budget,
        eicar_free: bool = False,
    ) -> str | None:
        found = content_signature(data, eicar_free=eicar_free)
        if found and (found.startswith("Eicar") or self.block_executables):
            return found
        if self.block_executables and filename:
            found = name_signature(filename)
            if found:
                return found
        if data[:4] == b"PK\x03\x04" or filename.lower().endswith(".zip"):
            try:
                return self._scan_zip(data, depth=depth + 1, budget=budget)
            except ZipBomb:
                return "Heuristics.Zip.Bomb"
            except (
                zipfile.BadZipFile,
                zipfile.LargeZipFile,
                EOFError,
                OSError,
                ValueError,
                NotImplementedError,
                RuntimeError,
            ):
                return None  # not a readable zip: judged by name and content above
        return None

    def _scan_zip(self, data: bytes, *, depth: int, budget: _Budget) -> str | None:
        if depth > self.max_depth:
            raise ZipBomb("archives nested too deep")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.infolist()
            if len(members) > self.max_members:
                raise ZipBomb("too many members")
            for info in members:
                budget.check()
                if info.is_dir():
                    continue
                if self.block_executables:
                    found = name_signature(info.filename.rpartition("/")[2])
                    if found:
                        return found
                if info.flag_bits & 0x1:
                    continue  # encrypted: cannot read the content
                content = self._read_member(zf, info, budget)
                found = self.scan_file(info.filename, content, depth=depth, budget=budget)
                if found:
                    return found
        return None

    def _read_member(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
        limit_ratio = max(info.compress_size, 1) * self.max_ratio
        out = bytearray()
        with zf.open(info) as f:
            while True:
                chunk = f.read(64 * 1024)
                if not chunk:
                    break
                budget.check()
                out += chunk
                budget.unpacked += len(chunk)
                if budget.unpacked > self.max_unpacked:
                    raise ZipBomb("too many bytes unpacked")
                if len(out) > limit_ratio and len(out) > 1024 * 1024:
                    raise ZipBomb("compression ratio too high")
        return bytes(out)


class VirusStage:
    name = "virus"
    phases = frozenset({Phase.DATA})

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner

    async def check(self, phase: Phase, ctx: Context) -> Sequence[Verdict]:
        if ctx.parsed is None:  # the whole message, larger than max_scan_size too
            return []
        found: str | None = await ctx.analysis(self)
        if found is None:
            return []
        return [Verdict.reject(self.name, R554_VIRUS(found), f"found {found}")]

    def analyse(self, ctx: Context, budget: Budget) -> str | None:
        """CPU-bound (a worker thread): the first finding, or None."""
        if ctx.parsed is None:
            return None
        return self.scanner.scan_message(ctx.parsed, budget.check)
