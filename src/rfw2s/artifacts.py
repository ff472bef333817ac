"""Artifact I/O. Every file is written to a temporary name in its folder, flushed to
disk, and renamed into place, so a crash never leaves a half-written artifact under
its final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
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


def _write_sidecar(npy_tmp, path, shape, dtype, sha256: str, params) -> Path:
    record = {"file": Path(path).name, "shape": list(shape), "dtype": str(dtype), "sha256": sha256,
              "params": params or {}}
    side_tmp = Path(f"{npy_tmp}.meta")
    side_tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    return side_tmp


def save_npy(path, array, params=None) -> None:
    """Write ``array`` as ``.npy`` and record its shape, dtype and checksum in
    ``<path>.meta.json``; both move into place only when complete (the matrix first: a
    crash in between leaves a matrix whose record disagrees, which :func:`load_npy`
    refuses)."""
    array = np.asarray(array)
    with npy_rows(path, array.shape, params, array.dtype) as write:
        write(array)


@contextlib.contextmanager
def npy_rows(path, shape, params=None, dtype=np.float64):
    """Yield ``write(block)``, which appends row blocks of a ``shape`` array in order (a
    large matrix built tile by tile); the checksum is taken as the bytes go out, so the
    file is never read back. Fewer rows than ``shape[0]`` in the end is an error."""
    dtype = np.dtype(dtype)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": tuple(shape)})
    digest = hashlib.sha256(header.getvalue())
    rows = 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header.getvalue())

            def write(block):
                nonlocal rows
                block = np.ascontiguousarray(block, dtype=dtype)
                if block.shape[1:] != tuple(shape[1:]) or rows + len(block) > shape[0]:
                    raise ValueError(f"{path}: rows of shape {block.shape} do not fit the remaining "
                                     f"{shape[0] - rows} rows of a {tuple(shape)} array")
                data = memoryview(block).cast("B")
                fh.write(data)
                digest.update(data)
                rows += len(block)

            yield write
        if rows != shape[0]:
            raise ValueError(f"{path}: {rows} of {shape[0]} rows written")
        side_tmp = _write_sidecar(tmp, path, shape, dtype, digest.hexdigest(), params)
    os.replace(side_tmp, sidecar_path(path))


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


def _arrow_column(values: np.ndarray):
    """A pyarrow array of a NumPy column, built from its buffers: ``pyarrow.array`` would import
    pandas (to ask whether it was given a Series), which is most of a small job's start-up."""
    import pyarrow as pa

    values = np.asarray(values)
    if values.dtype.kind in "US":  # text: offsets into the joined UTF-8 bytes
        encoded = [str(v).encode() for v in values]
        offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int32)
        return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets),
                                                                 pa.py_buffer(b"".join(encoded))])
    kinds = {"f": pa.float64(), "i": pa.int64()}
    if values.dtype.kind not in kinds:
        raise TypeError(f"no parquet column for NumPy dtype {values.dtype}")
    values = np.ascontiguousarray(values, dtype=np.float64 if values.dtype.kind == "f" else np.int64)
    return pa.Array.from_buffers(kinds[values.dtype.kind], len(values), [None, pa.py_buffer(values)])


def save_parquet(path, df, metadata: dict | None = None) -> None:
    """Write the table ``df`` (a DataFrame, index dropped, or a dict of NumPy columns, which
    spares a job pandas) with ``metadata`` as JSON under the ``rfw2s`` key."""
    import pyarrow as pa  # here, not at the top: the array steps start faster without it
    import pyarrow.parquet as pq

    if isinstance(df, dict):
        table = pa.Table.from_arrays([_arrow_column(v) for v in df.values()], names=list(df))
    else:
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
