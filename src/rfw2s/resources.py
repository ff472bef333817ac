"""Memory and disk checks made by a job before it allocates or writes anything large, so
a size that cannot fit is refused with the size it needs instead of crashing half-way."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


class InsufficientResources(RuntimeError):
    pass


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024


def available_memory(backend_name: str) -> int:
    """Free memory now: the GPU's on ``cupy``, else the host's (MemAvailable)."""
    if backend_name == "cupy":
        import cupy

        return int(cupy.cuda.Device().mem_info[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def ensure_memory(needed: int, backend_name: str, what: str) -> None:
    free = available_memory(backend_name)
    if needed > free:
        where = "GPU" if backend_name == "cupy" else "host"
        raise InsufficientResources(f"{what} needs about {format_bytes(needed)} of {where} memory; only "
                                    f"{format_bytes(free)} is free")


def ensure_disk(path, needed: int, what: str) -> None:
    folder = Path(path).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise InsufficientResources(f"{what} needs {format_bytes(needed)} of disk in {folder}; only "
                                    f"{format_bytes(free)} is free")
