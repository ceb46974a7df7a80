"""Where the knowledge base is, its files, and its digest: the one place that locates kb/."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Optional


def kb_dir() -> Path:
    """The knowledge base: $COVKB_KB, the copy installed with the package, or the source tree's kb/."""
    if "COVKB_KB" in os.environ:
        return Path(os.environ["COVKB_KB"])
    here = Path(__file__).resolve().parents[1]  # the covkb package
    for candidate in (here / "kb", here.parents[1] / "kb"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("knowledge base kb/ not found; set COVKB_KB")


def kb_files(directory: Optional[Path] = None) -> list[Path]:
    return sorted((directory or kb_dir()).glob("*.lp"))


def control(directory: Optional[Path] = None, arguments: tuple = ("--warn=none",), logger=None):
    """A clingo Control with every kb/ file loaded, not yet ground."""
    import clingo  # loaded with the first Control, not with the digest

    loaded = clingo.Control(list(arguments), logger=logger)
    for path in kb_files(directory):
        loaded.load(str(path))
    return loaded


def kb_sha256(directory: Optional[Path] = None) -> str:
    """SHA-256 over every kb/ file, name and content: the knowledge base a result came from."""
    return _kb_sha256((directory or kb_dir()).resolve())


@lru_cache(maxsize=8)
def _kb_sha256(directory: Path) -> str:
    digest = sha256()
    for path in kb_files(directory):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def sha256():
    """A SHA-256 hash object. CPython's own implementation gives the digest hashlib gives
    without loading OpenSSL, which costs `covkb check` about 5 ms; hashlib where it is absent."""
    try:
        from _sha2 import sha256  # CPython 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # CPython 3.11
        except ImportError:
            from hashlib import sha256
    return sha256()
