from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "mime"


def load(name: str, *, lf: bool = False) -> bytes:
    """A sample message with CRLF line ends (whatever the checkout did), or bare LF."""
    data = (DATA / name).read_bytes().replace(b"\r\n", b"\n")
    return data if lf else data.replace(b"\n", b"\r\n")


@pytest.fixture
def sample():
    return load
