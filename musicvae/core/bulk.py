"""Bulk writes in PostgreSQL's binary COPY format: no number is ever formatted as text.

A row is an int16 field count, then per field an int32 byte length and the value in network
byte order; pgvector's `vector` is int16 dimension, int16 zero, then float4s. numpy lays out
the fixed-size fields of every row at once; only the text ids are joined in Python.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)


def text(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def _rows(
    prefix: bytes, ids: list[str], middle: bytes, fixed: np.ndarray, suffix: bytes = b""
) -> Iterator[bytes]:
    raw, size = fixed.tobytes(), fixed.itemsize
    for i, track_id in enumerate(ids):
        yield prefix + text(track_id) + middle + raw[i * size : (i + 1) * size] + suffix


def embedding_rows(
    track_ids: list[str], version: int, run_id: str, embeddings: np.ndarray
) -> Iterator[bytes]:
    """Rows of (track_id, model_version, run_id, embedding)."""
    n, dim = embeddings.shape
    vector = np.empty(
        n, dtype=[("len", ">i4"), ("dim", ">i2"), ("zero", ">i2"), ("v", ">f4", (dim,))]
    )
    vector["len"], vector["dim"], vector["zero"], vector["v"] = 4 + 4 * dim, dim, 0, embeddings
    middle = struct.pack(">ii", 4, version) + text(run_id)
    return _rows(struct.pack(">h", 4), track_ids, middle, vector)


def assignment_rows(
    run_id: str,
    track_ids: list[str],
    cluster_ids: np.ndarray,
    distances: np.ndarray,
    assigned_by: str | None = None,
) -> Iterator[bytes]:
    """Rows of (run_id, track_id, cluster_id, distance[, assigned_by])."""
    tail = np.empty(
        len(track_ids), dtype=[("l1", ">i4"), ("c", ">i4"), ("l2", ">i4"), ("d", ">f4")]
    )
    tail["l1"], tail["c"], tail["l2"], tail["d"] = 4, cluster_ids, 4, distances
    fields, suffix = (4, b"") if assigned_by is None else (5, text(assigned_by))
    return _rows(struct.pack(">h", fields) + text(run_id), track_ids, b"", tail, suffix)


def copy(
    conn, table: str, columns: tuple[str, ...], rows: Iterator[bytes], freeze: bool = False
) -> None:
    """COPY the rows into `table` inside the caller's (SQLAlchemy) transaction. `freeze` only
    for a table created in this transaction: PostgreSQL refuses it otherwise."""
    payload = io.BytesIO(b"".join([HEADER, *rows, TRAILER]))
    options = "FORMAT binary, FREEZE" if freeze else "FORMAT binary"
    with conn.connection.cursor() as cur:
        cur.copy_expert(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH ({options})",
            payload,
            size=1 << 20,
        )
