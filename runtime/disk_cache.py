"""The persistent cache of compiled object code.

Entries are keyed by a hash the caller computes (the LLVM module text, the host CPU name and
features, and the graphjit and llvmlite versions), so a changed compiler or CPU never loads stale
code. Nothing is ever unpickled: an entry is a fixed header and the raw object code. The header
holds the entry's full key, the payload's size and a SHA-256 over key and payload; all three are
checked on every load, so bytes stored under another key's name (a copied, swapped or planted
file) are never handed out, let alone executed. Writes go to a temporary file renamed into
place, so concurrent processes see either no entry or a whole one; temporary files of writers
that died are removed. Any entry that fails to load (here, or later in the loader: missing
symbols, unloadable object code) is deleted with one warning naming the cache, and recompiled.
A directory other users can write to is refused with a warning (they could plant code we would
execute).

The cache is bounded: at most GRAPHJIT_CACHE_MAX_BYTES (default 256 MiB) of entries; each store
evicts the least recently used ones beyond that (a hit refreshes an entry's mtime).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import os
import stat
import struct
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from graphjit.compiler.errors import ConfigurationError

MAGIC = b"GJITOBJ2"
HEADER = struct.Struct("<8s32s32sQ")   # magic, key digest, sha256(key digest + payload), length
SUFFIX = ".gjo"
TEMP_PREFIX = ".tmp-"
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
STALE_TEMP_SECONDS = 3600      # a temp file this old belongs to a writer that is long gone


def default_directory() -> Path:
    configured = os.environ.get("GRAPHJIT_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphjit"


def cache_enabled() -> bool:
    return os.environ.get("GRAPHJIT_CACHE_DIR", "").lower() not in ("off", "none", "0")


def max_bytes_setting() -> int:
    """GRAPHJIT_CACHE_MAX_BYTES: a byte count, optionally with a K/M/G suffix (powers of 1024)."""
    configured = os.environ.get("GRAPHJIT_CACHE_MAX_BYTES", "").strip()
    if not configured:
        return DEFAULT_MAX_BYTES
    scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(configured[-1:].upper(), 1)
    digits = configured[:-1] if scale != 1 else configured
    try:
        value = int(float(digits) * scale)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigurationError(
            f"GRAPHJIT_CACHE_MAX_BYTES={configured!r} is not a byte count: use a number of bytes, "
            "optionally with K, M or G (e.g. 512M); 0 keeps no entries")
    return value


class Uncacheable(Exception):
    """A value has no canonical text (an unknown object): do not key a cache entry on it."""


def canonical_text(value: Any, ignore_fields: frozenset[str] = frozenset()) -> str:
    """An exact, deterministic text of a tree of dataclasses, enums, dtypes, arrays, mappings
    and sequences: equal texts mean equal values (arrays by their bytes, floats by repr, which
    round-trips). Raises Uncacheable for anything it cannot spell exactly (functions, objects
    without fields), so a cache key is never built from a lossy description. Dataclass fields
    named in `ignore_fields` are left out."""
    parts: list[str] = []
    _write_canonical(value, parts.append, ignore_fields)
    return "".join(parts)


def _write_canonical(value: Any, write: Any, ignore: frozenset[str]) -> None:
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        write(f"{type(value).__name__}:{value!r};")
    elif isinstance(value, enum.Enum):
        write(f"{type(value).__qualname__}.{value.name};")
    elif isinstance(value, np.dtype):
        write(f"dtype:{value!r}:{value.str};")
    elif isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise Uncacheable("an object array")
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        write(f"{type(value).__name__}:{array.dtype.str}:{array.shape}:{digest};")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        write(f"{type(value).__qualname__}(")
        for item in dataclasses.fields(value):
            if item.name in ignore:
                continue
            write(f"{item.name}=")
            _write_canonical(getattr(value, item.name), write, ignore)
        write(")")
    elif isinstance(value, (tuple, list)):
        write(f"{type(value).__name__}[")
        for item in value:
            _write_canonical(item, write, ignore)
        write("]")
    elif isinstance(value, Mapping):
        write(f"{type(value).__qualname__}{{")
        items = []
        for key, item in value.items():
            parts: list[str] = []
            _write_canonical(key, parts.append, ignore)
            _write_canonical(item, parts.append, ignore)
            items.append(parts)
        for parts in sorted(items):
            write("".join(parts))
        write("}")
    elif isinstance(value, (set, frozenset)):
        write(f"{type(value).__name__}{{{''.join(sorted(canonical_text(v, ignore) for v in value))}}}")
    elif hasattr(type(value), "__slots__") and not hasattr(value, "__dict__"):
        write(f"{type(value).__module__}.{type(value).__qualname__}<")
        for name in type(value).__slots__:
            if not name.startswith("_"):
                write(f"{name}=")
                _write_canonical(getattr(value, name, None), write, ignore)
        write(">")
    else:
        raise Uncacheable(f"no canonical text for {type(value).__qualname__}")


@functools.lru_cache(maxsize=None)
def source_fingerprint(*directories: str) -> str:
    """A digest of every .py file under `directories` (their code decides what object code a
    Program becomes, so a changed renderer never loads code made by the old one)."""
    digest = hashlib.sha256()
    for directory in directories:
        paths = []
        for root, folders, files in os.walk(directory):
            folders[:] = [f for f in folders if f != "__pycache__"]
            paths += [os.path.join(root, name) for name in files if name.endswith(".py")]
        for path in sorted(paths):
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                data = b"?"
            digest.update(os.path.relpath(path, directory).encode() + b"\0")
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def _key_digest(key: str) -> bytes:
    try:
        digest = bytes.fromhex(key)
    except ValueError:
        digest = b""
    return digest if len(digest) == 32 else hashlib.sha256(key.encode()).digest()


class DiskCache:
    """Object code on disk, one file per key, at most `max_bytes` in all."""

    def __init__(self, directory: str | os.PathLike | None = None,
                 max_bytes: int | None = None):
        self.directory = Path(directory) if directory is not None else default_directory()
        self.max_bytes = max_bytes if max_bytes is not None else max_bytes_setting()
        self._refusal_warned = False
        self._lock = threading.Lock()
        self._swept_temps = False

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

    def _directory_problem(self) -> str:
        """Why the directory cannot hold the cache ("" when it can, or can be created)."""
        path = self.directory
        if path.is_symlink() and not path.exists():
            return f"is a dangling symbolic link (to {os.readlink(path)})"
        if path.exists() and not path.is_dir():
            return "is a file, not a directory"
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    return f"cannot be created: {parent} is a file"
                break
        return ""

    # ------------------------------------------------------------ entries
    def load(self, key: str) -> bytes | None:
        """The payload stored under `key`, or None (missing, refused, or damaged: then deleted).

        Only a payload whose header names exactly this key, and whose size and checksum match,
        is returned."""
        if not self._directory_is_safe():
            return None
        path = self.path_of(key)
        try:
            with open(path, "rb") as handle:
                if hasattr(os, "getuid") and os.fstat(handle.fileno()).st_uid != os.getuid():
                    return None
                blob = handle.read()
        except OSError:   # missing, unreadable, or a directory squatting on the name
            return None
        payload, problem = self._check(blob, key)
        if payload is None:
            self.discard(key, problem)
            return None
        try:
            os.utime(path)    # least recently used = oldest mtime
        except OSError:
            pass
        return payload

    @staticmethod
    def _check(blob: bytes, key: str) -> tuple[bytes | None, str]:
        if len(blob) < HEADER.size:
            return None, "truncated header"
        magic, stored_key, checksum, length = HEADER.unpack_from(blob)
        payload = blob[HEADER.size:]
        if magic != MAGIC:
            return None, "not a graphjit entry or an old format"
        digest = _key_digest(key)
        if stored_key != digest:
            return None, "it holds another key's code"
        if length != len(payload):
            return None, f"size mismatch: {len(payload)} bytes, header says {length}"
        if hashlib.sha256(digest + payload).digest() != checksum:
            return None, "checksum mismatch"
        return payload, ""

    def discard(self, key: str, reason: str) -> None:
        """Delete an entry that failed to load, with one warning naming the cache."""
        path = self.path_of(key)
        warnings.warn(f"graphjit: discarding disk-cache entry {path.name} in {self.directory} "
                      f"({reason}); recompiling.", RuntimeWarning, stacklevel=3)
        try:
            path.unlink()
        except OSError:
            pass

    def store(self, key: str, payload: bytes) -> bool:
        """Write atomically, then evict beyond the byte cap; never raises (a cache that cannot
        write is just a slower cache)."""
        if self.max_bytes <= 0:
            return False
        problem = self._directory_problem()
        if problem:
            if not self._refusal_warned:
                self._refusal_warned = True
                warnings.warn(f"graphjit: the disk cache directory {self.directory} (set it with "
                              f"GRAPHJIT_CACHE_DIR) {problem}; compiled code is not cached. Point "
                              "GRAPHJIT_CACHE_DIR at a directory, or set it to off.",
                              RuntimeWarning, stacklevel=3)
            return False
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self._directory_is_safe():
                return False
            digest = _key_digest(key)
            header = HEADER.pack(MAGIC, digest, hashlib.sha256(digest + payload).digest(),
                                 len(payload))
            fd, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=SUFFIX,
                                        dir=self.directory)
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
        except OSError as exc:
            warnings.warn(f"graphjit: could not write the disk cache in {self.directory}: {exc}",
                          RuntimeWarning, stacklevel=3)
            return False
        if not self._swept_temps:
            self._swept_temps = True
            self.remove_stale_temps()
        self.evict(keep=self.path_of(key))
        return True

    # ------------------------------------------------------------ housekeeping
    def _scan(self) -> list[tuple[Path, os.stat_result]]:
        found = []
        try:
            with os.scandir(self.directory) as it:
                for item in it:
                    if item.name.endswith(SUFFIX) and not item.name.startswith(TEMP_PREFIX):
                        try:
                            found.append((Path(item.path), item.stat(follow_symlinks=False)))
                        except OSError:
                            pass
        except OSError:
            return []
        return found

    def evict(self, keep: Path | None = None) -> int:
        """Delete least recently used entries until the cache fits `max_bytes`."""
        entries = self._scan()
        total = sum(info.st_size for _, info in entries)
        removed = 0
        if total <= self.max_bytes:
            return 0
        for path, info in sorted(entries, key=lambda e: e[1].st_mtime_ns):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            try:
                path.unlink()
            except OSError:
                continue
            total -= info.st_size
            removed += 1
        return removed

    def stale_temps(self) -> list[Path]:
        """Temporary files of writers that are gone (dead process, or older than an hour)."""
        stale = []
        now = time.time()
        try:
            candidates = [p for p in self.directory.iterdir() if p.name.startswith(TEMP_PREFIX)]
        except OSError:
            return []
        for path in candidates:
            try:
                age = now - path.stat().st_mtime
            except OSError:
                continue
            if age > STALE_TEMP_SECONDS or not _writer_alive(path.name):
                stale.append(path)
        return stale

    def remove_stale_temps(self) -> int:
        removed = 0
        for path in self.stale_temps():
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
        return removed

    def entries(self) -> list[Path]:
        return sorted(path for path, _ in self._scan())

    def info(self) -> dict:
        entries = self._scan()
        temps = self.stale_temps()
        return {"directory": str(self.directory), "entries": len(entries),
                "bytes": sum(info.st_size for _, info in entries), "max_bytes": self.max_bytes,
                "stale_temp_files": len(temps)}

    def clear(self) -> int:
        removed = 0
        for path in self.entries() + self.stale_temps():
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
        return removed


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that made this temp file (its pid is in the name) still runs."""
    try:
        pid = int(temp_name[len(TEMP_PREFIX):].split("-", 1)[0])
    except ValueError:
        return False        # no pid in the name: an old writer's file (its age decides too)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True         # alive, someone else's
    return True


_default: DiskCache | None = None
_default_lock = threading.Lock()


_setting_warnings: set[str] = set()


def _configured_max_bytes() -> int:
    """The byte cap; a bad GRAPHJIT_CACHE_MAX_BYTES warns once and keeps the default (a call
    must never fail because of a cache setting)."""
    try:
        return max_bytes_setting()
    except ConfigurationError as exc:
        if str(exc) not in _setting_warnings:
            _setting_warnings.add(str(exc))
            warnings.warn(f"graphjit: {exc}; using the default of {DEFAULT_MAX_BYTES} bytes",
                          RuntimeWarning, stacklevel=4)
        return DEFAULT_MAX_BYTES


def default_cache() -> DiskCache:
    """The process-wide cache for the current GRAPHJIT_CACHE_DIR and GRAPHJIT_CACHE_MAX_BYTES
    (re-read if they change)."""
    global _default
    directory, max_bytes = default_directory(), _configured_max_bytes()
    with _default_lock:
        if (_default is None or _default.directory != directory
                or _default.max_bytes != max_bytes):
            _default = DiskCache(directory, max_bytes)
        return _default


def _fresh_locks_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    if _default is not None:
        _default._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)
