"""Read a TensorFlow checkpoint (TensorBundle) with the standard library and numpy alone.

A bundle is `<prefix>.index`, an SSTable (LevelDB table format, here with uncompressed blocks)
mapping tensor names to BundleEntryProto records, and `<prefix>.data-00000-of-00001`, the raw
little-endian tensors those records point into. No protobuf package and no TensorFlow needed.
"""
import struct
from pathlib import Path

import numpy as np

_MAGIC = 0xDB4775248B80FB57
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16, 10: np.bool_}


def _varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf):
    """Yield (field number, value) of a protobuf message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, value


def _block_entries(data, offset, size):
    """Key/value pairs of one SSTable block (keys are prefix-compressed against the previous)."""
    block = data[offset:offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + vlen]
        pos += vlen


def _entry(value):
    """BundleEntryProto -> (dtype, shape, shard, offset, size)."""
    f = {"shape": []}
    for field, v in _proto_fields(value):
        if field == 1:
            f["dtype"] = v
        elif field == 2:  # TensorShapeProto: repeated Dim {int64 size = 1}
            f["shape"] = [dict(_proto_fields(dim)).get(1, 0) for k, dim in _proto_fields(v) if k == 2]
        elif field in (3, 4, 5):
            f[{3: "shard", 4: "offset", 5: "size"}[field]] = v
    return f.get("dtype"), tuple(f["shape"]), f.get("shard", 0), f.get("offset", 0), f.get("size", 0)


def read_bundle(prefix):
    """{tensor name: numpy array} of the TF checkpoint at `prefix` (e.g. '.../MSD_musicnn/')."""
    index = Path(str(prefix) + ".index").read_bytes()
    footer = index[-48:]
    if struct.unpack("<Q", footer[-8:])[0] != _MAGIC:
        raise ValueError(f"{prefix}.index is not a TensorFlow checkpoint index (bad magic number)")
    _, pos = _varint(footer, 0)  # metaindex handle: offset
    _, pos = _varint(footer, pos)  # and size
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    data = Path(str(prefix) + ".data-00000-of-00001").read_bytes()
    tensors = {}
    for _, handle in _block_entries(index, index_offset, index_size):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        for key, value in _block_entries(index, offset, size):
            if not key:  # the empty key holds the BundleHeaderProto
                continue
            dtype, shape, shard, off, nbytes = _entry(value)
            if dtype not in _DTYPES or shard != 0:
                continue
            tensors[key.decode()] = np.frombuffer(data, dtype=_DTYPES[dtype], count=nbytes // np.dtype(_DTYPES[dtype]).itemsize,
                                                  offset=off).reshape(shape).copy()
    return tensors
