"""Artifact I/O. Every file is written to a temporary name in its folder, flushed to
disk, and renamed into place, so a crash never leaves a half-written artifact under
its final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

METADATA_KEY = b"rfw2s"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from collaborators
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class DamagedArtifact(RuntimeError):
    """A cached matrix does not match its sidecar record."""


def sidecar_path(path) -> Path:
    return Path(f"{path}.meta.json")


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_sidecar(npy_tmp, path, array_like, params) -> Path:
    record = {"file": Path(path).name, "shape": list(array_like.shape), "dtype": str(array_like.dtype),
              "sha256": _sha256(npy_tmp), "params": params or {}}
    side_tmp = Path(f"{npy_tmp}.meta")
    side_tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    return side_tmp


@contextlib.contextmanager
def npy_with_sidecar(path, params=None):
    """Yield a temporary ``.npy`` path; on success record its shape, dtype and checksum in
    ``<path>.meta.json`` and move both into place (the matrix first: a crash in between
    leaves a matrix whose record disagrees, which :func:`load_npy` refuses)."""
    with atomic_path(path) as tmp:
        yield tmp
        array = np.load(tmp, mmap_mode="r", allow_pickle=False)
        side_tmp = _write_sidecar(tmp, path, array, params)
        del array
    os.replace(side_tmp, sidecar_path(path))


def save_npy(path, array, params=None) -> None:
    with npy_with_sidecar(path, params) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)


def open_npy_for_writing(tmp_path, shape, dtype=np.float64):
    """A writable memory map in ``.npy`` format, to fill block by block (large matrices)."""
    return np.lib.format.open_memmap(tmp_path, mode="w+", dtype=dtype, shape=tuple(shape))


def load_npy(path, mmap: bool = True) -> np.ndarray:
    """Load a cached matrix after checking it against its sidecar (shape, dtype, checksum)."""
    path = Path(path)
    how_to_fix = f"delete it (rm {path}) and run snakemake again to rebuild it"
    try:
        record = json.loads(sidecar_path(path).read_text())
    except FileNotFoundError:
        raise DamagedArtifact(f"{path} has no record {sidecar_path(path).name}: it was not written by a "
                              f"finished rfw2s job; {how_to_fix}") from None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DamagedArtifact(f"{path} cannot be read ({exc}); {how_to_fix}") from None
    if list(array.shape) != record["shape"] or str(array.dtype) != record["dtype"]:
        raise DamagedArtifact(f"{path} holds {array.dtype}{list(array.shape)} but its record says "
                              f"{record['dtype']}{record['shape']}; {how_to_fix}")
    if _sha256(path) != record["sha256"]:
        raise DamagedArtifact(f"{path} does not match its recorded checksum (damaged, or replaced by "
                              f"another file); {how_to_fix}")
    return array if mmap else np.array(array)


def save_npz(path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def save_parquet(path, df, metadata: dict | None = None) -> None:
    """Write the DataFrame ``df`` (index dropped) with ``metadata`` as JSON under the
    ``rfw2s`` key."""
    import pyarrow as pa  # here, not at the top: the array steps start faster without it
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata is not None:
        meta = dict(table.schema.metadata or {})
        meta[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_metadata(path) -> dict:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(METADATA_KEY, b"{}"))
