"""Read a TensorFlow checkpoint (tensor bundle) into numpy arrays, without TensorFlow.

A checkpoint `PREFIX` is two files: `PREFIX.index`, a LevelDB-format table mapping each variable
name to a `BundleEntryProto` (dtype, shape, byte offset and size in the data file), and
`PREFIX.data-00000-of-00001`, the tensors' raw little-endian bytes back to back. Both formats are
small and frozen, so reading them is a page of code rather than a 500 MB dependency.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from musicvae.core.errors import MusicVAEError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked crc32c (4 bytes)

# tensorflow/core/framework/types.proto: DataType -> numpy dtype (little-endian).
DTYPES = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    19: np.dtype("<f2"),
}


class CheckpointFormatError(MusicVAEError):
    """The files are not a TensorFlow tensor bundle this reader understands."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> dict[int, list]:
    """Decode one protobuf message: field number -> values (ints, or bytes when delimited)."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _block(table: bytes, handle: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of the block a BlockHandle (offset, size varints) points at."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + BLOCK_TRAILER_SIZE > len(table):
        raise CheckpointFormatError("block handle points past the end of the index file")
    if table[offset + size] != 0:
        raise CheckpointFormatError("compressed index blocks are not supported")
    block = table[offset : offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 * (n_restarts + 1)
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_size, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_size]))
        pos += value_size
    return entries


def read_index(index: bytes) -> dict[str, dict]:
    """Variable name -> {dtype, shape, shard, offset, size} from a `.index` file's bytes."""
    if len(index) < FOOTER_SIZE:
        raise CheckpointFormatError("index file too short for a table footer")
    footer = index[-FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, 40)[0] != TABLE_MAGIC:
        raise CheckpointFormatError("not a LevelDB-format table (bad magic number)")
    _, pos = _varint(footer, 0)  # skip the metaindex handle: the bundle has no meta blocks
    _, pos = _varint(footer, pos)
    entries = {}
    for _, data_handle in _block(index, footer[pos:]):
        for key, value in _block(index, data_handle):
            if key:  # the empty key holds the BundleHeaderProto
                entries[key.decode()] = _entry(_proto_fields(value))
    return entries


def _entry(fields: dict[int, list]) -> dict:
    if 7 in fields:
        raise CheckpointFormatError("partitioned (sliced) variables are not supported")
    dims = [_proto_fields(d).get(1, [0])[0] for d in _proto_fields(fields[2][0]).get(2, [])]
    return {
        "dtype": fields.get(1, [0])[0],
        "shape": tuple(dims),
        "shard": fields.get(3, [0])[0],
        "offset": fields.get(4, [0])[0],
        "size": fields.get(5, [0])[0],
    }


def load_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every variable of the single-shard checkpoint `prefix` as a numpy array.

    `prefix` is what TensorFlow's Saver was given: `PREFIX.index` and
    `PREFIX.data-00000-of-00001` must exist (a prefix that ends in '/' names dotfiles in a folder).
    """
    prefix = str(prefix)
    index_path, data_path = Path(prefix + ".index"), Path(prefix + ".data-00000-of-00001")
    for path in (index_path, data_path):
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file {path} does not exist")
    data = data_path.read_bytes()
    tensors = {}
    for name, e in read_index(index_path.read_bytes()).items():
        if e["shard"] != 0:
            raise CheckpointFormatError(f"{name}: multi-shard checkpoints are not supported")
        dtype = DTYPES.get(e["dtype"])
        if dtype is None:
            raise CheckpointFormatError(f"{name}: unsupported TensorFlow dtype {e['dtype']}")
        expected = int(np.prod(e["shape"], dtype=np.int64)) * dtype.itemsize
        if e["size"] != expected or e["offset"] + e["size"] > len(data):
            raise CheckpointFormatError(
                f"{name}: {e['size']} bytes at {e['offset']} do not hold {e['shape']} {dtype}"
            )
        raw = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=e["offset"])
        tensors[name] = raw.reshape(e["shape"]).copy()
    return tensors
