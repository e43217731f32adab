"""The on-disk cache of compiled code: `gj.cache.info()`, `gj.cache.clear()`.

Location: GRAPHJIT_CACHE_DIR, else $XDG_CACHE_HOME/graphjit, else ~/.cache/graphjit.
GRAPHJIT_CACHE_DIR=off disables it.
"""
from __future__ import annotations

from graphjit.runtime.disk_cache import default_cache


def info() -> dict:
    """{'directory', 'entries', 'bytes'} of the disk cache."""
    return default_cache().info()


def clear() -> int:
    """Delete every entry; return how many were removed."""
    return default_cache().clear()


def directory() -> str:
    return str(default_cache().directory)
