"""What compiled object code depends on besides its IR, read without loading LLVM.

A disk-cache key holds `host_signature()` and `PIPELINE`, so code built for another CPU, another
GRAPHJIT_CPU, another llvmlite or other optimisation settings is never loaded. Reading them costs
no llvmlite import, which keeps a warm start (shared_object.py) free of LLVM.
"""
from __future__ import annotations

import functools
import os
import platform

OPT_LEVEL = 3
# Change it whenever llvm.optimise or llvm._new_machine change what code LLVM emits for the same
# IR, so object code made with the old settings is not loaded.
PIPELINE = f"newpm-O{OPT_LEVEL}+loop-vectorize+slp+unroll|codemodel=jitdefault|reloc=pic|v2"


@functools.lru_cache(maxsize=None)
def _cpu_identity() -> str | None:
    """Vendor, family, model and feature flags of the first CPU, as the kernel reports them (the
    kernel drops flags the OS does not support, as LLVM's own host query does); None off Linux."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            text = info.read(1 << 16)
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    wanted = ("vendor_id", "cpu family", "model", "stepping", "flags")
    if "flags" not in fields:
        return None
    return "|".join(f"{name}={fields.get(name, '')}" for name in wanted)


def host_signature() -> str | None:
    """The machine, the CPU graphjit compiles for and the llvmlite version, without LLVM; None
    where the CPU cannot be read so (callers then ask LLVM: llvm.host_description)."""
    identity = _cpu_identity()
    if identity is None:
        return None
    import llvmlite   # the package alone: its version, not the LLVM library

    target = os.environ.get("GRAPHJIT_CPU", "").strip().lower() or "host"
    return (f"{platform.system()}-{platform.machine()}|cpu={target}|{identity}"
            f"|llvmlite-{llvmlite.__version__}")


def host_key() -> str:
    """The part of a disk-cache key that names the target: `host_signature()`, or LLVM's own
    description of the host where the CPU cannot be read without it."""
    signature = host_signature()
    if signature is not None:
        return signature
    from . import llvm

    return llvm.host_description()
