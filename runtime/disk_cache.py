"""The persistent cache of compiled object code.

Entries are keyed by a hash the caller computes (the LLVM module text, the host CPU name and
features, and the graphjit and llvmlite versions), so a changed compiler or CPU never loads stale
code. Nothing is ever unpickled: an entry is a fixed header, a SHA-256 of the payload and the raw
object code. Writes go to a temporary file renamed into place, so concurrent processes see either
no entry or a whole one. A damaged entry is deleted with a warning and recompiled; a directory
other users can write to is refused with a warning (they could plant code we would execute).
"""
from __future__ import annotations

import hashlib
import os
import stat
import struct
import tempfile
import threading
import warnings
from pathlib import Path

MAGIC = b"GJITOBJ1"
HEADER = struct.Struct("<8s32sQ")   # magic, sha256(payload), payload length
SUFFIX = ".gjo"


def default_directory() -> Path:
    configured = os.environ.get("GRAPHJIT_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphjit"


def cache_enabled() -> bool:
    return os.environ.get("GRAPHJIT_CACHE_DIR", "").lower() not in ("off", "none", "0")


class DiskCache:
    """Object code on disk, one file per key."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else default_directory()
        self._refusal_warned = False
        self._lock = threading.Lock()

    @staticmethod
    def make_key(*parts: str | bytes) -> str:
        digest = hashlib.sha256()
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(struct.pack("<Q", len(data)))
            digest.update(data)
        return digest.hexdigest()

    def path_of(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    # ------------------------------------------------------------ safety
    def _directory_is_safe(self) -> bool:
        try:
            info = self.directory.stat()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        foreign_owner = hasattr(os, "getuid") and info.st_uid != os.getuid()
        if writable_by_others or foreign_owner:
            if not self._refusal_warned:
                self._refusal_warned = True
                warnings.warn(
                    f"graphjit: not using the disk cache in {self.directory}: it is writable by "
                    "other users or owned by someone else, so its entries could be replaced with "
                    "foreign code. Set GRAPHJIT_CACHE_DIR to a private directory "
                    "(mode 700).", RuntimeWarning, stacklevel=3)
            return False
        return True

    # ------------------------------------------------------------ entries
    def load(self, key: str) -> bytes | None:
        """The payload stored under `key`, or None (missing, refused, or damaged: then deleted)."""
        if not self._directory_is_safe():
            return None
        path = self.path_of(key)
        try:
            with open(path, "rb") as handle:
                if hasattr(os, "getuid") and os.fstat(handle.fileno()).st_uid != os.getuid():
                    return None
                blob = handle.read()
        except FileNotFoundError:
            return None
        except OSError:
            return None
        payload = self._check(blob)
        if payload is None:
            warnings.warn(f"graphjit: discarding a damaged disk-cache entry {path.name} "
                          "(truncated or checksum mismatch); recompiling.", RuntimeWarning,
                          stacklevel=3)
            try:
                path.unlink()
            except OSError:
                pass
        return payload

    @staticmethod
    def _check(blob: bytes) -> bytes | None:
        if len(blob) < HEADER.size:
            return None
        magic, checksum, length = HEADER.unpack_from(blob)
        payload = blob[HEADER.size:]
        if magic != MAGIC or length != len(payload):
            return None
        if hashlib.sha256(payload).digest() != checksum:
            return None
        return payload

    def store(self, key: str, payload: bytes) -> bool:
        """Write atomically; never raises (a cache that cannot write is just a slower cache)."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self._directory_is_safe():
                return False
            header = HEADER.pack(MAGIC, hashlib.sha256(payload).digest(), len(payload))
            fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(header)
                    handle.write(payload)
                # no fsync (it costs milliseconds on the first call): the rename is atomic for
                # concurrent readers, and an entry torn by a power loss fails its checksum
                os.replace(temp, self.path_of(key))
            except BaseException:
                try:
                    os.unlink(temp)
                except OSError:
                    pass
                raise
            return True
        except OSError as exc:
            warnings.warn(f"graphjit: could not write the disk cache in {self.directory}: {exc}",
                          RuntimeWarning, stacklevel=3)
            return False

    def entries(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.suffix == SUFFIX
                          and not p.name.startswith(".tmp-"))
        except OSError:
            return []

    def info(self) -> dict:
        entries = self.entries()
        return {"directory": str(self.directory), "entries": len(entries),
                "bytes": sum(p.stat().st_size for p in entries if p.exists())}

    def clear(self) -> int:
        removed = 0
        for path in self.entries():
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
        return removed


_default: DiskCache | None = None
_default_lock = threading.Lock()


def default_cache() -> DiskCache:
    """The process-wide cache for the current GRAPHJIT_CACHE_DIR (re-read if it changes)."""
    global _default
    with _default_lock:
        if _default is None or _default.directory != default_directory():
            _default = DiskCache()
        return _default


def _fresh_locks_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    if _default is not None:
        _default._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)
