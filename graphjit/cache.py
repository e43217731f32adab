"""The on-disk cache of compiled code: `gj.cache.info()`, `gj.cache.clear()`.

Location: GRAPHJIT_CACHE_DIR, else $XDG_CACHE_HOME/graphjit, else ~/.cache/graphjit.
GRAPHJIT_CACHE_DIR=off disables it. GRAPHJIT_CACHE_MAX_BYTES caps its size (default 256 MiB;
512M, 2G... accepted): least recently used entries are evicted beyond it.
"""
from __future__ import annotations

from graphjit.runtime.disk_cache import default_cache


def info() -> dict:
    """{'directory', 'entries', 'bytes', 'max_bytes', 'stale_temp_files'} of the disk cache."""
    return default_cache().info()


def clear() -> int:
    """Delete every entry (and temp files of dead writers); return how many were removed."""
    return default_cache().clear()


def directory() -> str:
    return str(default_cache().directory)
