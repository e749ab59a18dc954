"""The few ONNX messages genred writes, serialized without the ``onnx`` package.

``classifier/musicnn_ort.py`` builds MSD_musicnn's graph when a process first needs it.
Importing ``onnx`` costs about a second on this machine (most of it ``ml_dtypes``), and
every scan's decode-pool server paid it before the first file could decode; the graph
needs only a model, a graph, nodes with integer attributes, float/int64 initialisers and
typed inputs/outputs, which are a few lines of protobuf. Each function returns one
message's wire bytes with its fields in field-number order, as protobuf's own serializer
writes them (ONNX's schema is proto2: repeated numbers are not packed), so the bytes equal
what ``onnx.helper`` + ``SerializeToString`` give for the same graph
(tests/classifier/test_onnx_proto.py checks that, and that ``onnx.checker`` accepts them).

Field numbers are ONNX's ``onnx.proto`` (IR version 8).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

# TensorProto.DataType
FLOAT, INT64 = 1, 7
_ELEM_TYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}
# AttributeProto.AttributeType
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int64 is written as its 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _str(field: int, value: str) -> bytes:
    return _bytes(field, value.encode())


def _float(field: int, value: float) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<f", value)


def tensor(name: str, array: np.ndarray) -> bytes:
    """A TensorProto holding ``array`` (float32 or int64) as raw little-endian data."""
    dtype = np.dtype(array.dtype)
    if dtype not in _ELEM_TYPES:
        raise ValueError(f"no ONNX tensor type for {dtype}")
    data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
    return (b"".join(_int(1, d) for d in array.shape) + _int(2, _ELEM_TYPES[dtype])
            + _str(8, name) + _bytes(9, data))


def _attribute(name: str, value: int | float | Sequence[int]) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (int, float, list, tuple)):
        raise TypeError(f"attribute {name}: ints, an int or a float, not {value!r}")
    if isinstance(value, int):
        return _str(1, name) + _int(3, value) + _int(20, _ATTR_INT)
    if isinstance(value, float):
        return _str(1, name) + _float(2, value) + _int(20, _ATTR_FLOAT)
    return (_str(1, name) + b"".join(_int(8, int(v)) for v in value)
            + _int(20, _ATTR_INTS))


def node(op_type: str, inputs: Iterable[str], outputs: Iterable[str],
         **attributes: int | float | Sequence[int]) -> bytes:
    """A NodeProto; attributes in name order, as ``onnx.helper.make_node`` sorts them."""
    return (b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs)
            + _str(4, op_type)
            + b"".join(_bytes(5, _attribute(k, v)) for k, v in sorted(attributes.items())))


def value_info(name: str, elem_type: int, shape: Sequence[int | str]) -> bytes:
    """A ValueInfoProto of a tensor; a str dimension is symbolic (a batch size)."""
    dims = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d))
                    for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def graph(nodes: Iterable[bytes], name: str, initializers: Iterable[bytes],
          inputs: Iterable[bytes], outputs: Iterable[bytes]) -> bytes:
    """A GraphProto of serialized nodes, initialisers (tensors) and value infos."""
    return (b"".join(_bytes(1, n) for n in nodes) + _str(2, name)
            + b"".join(_bytes(5, t) for t in initializers)
            + b"".join(_bytes(11, v) for v in inputs) + b"".join(_bytes(12, v) for v in outputs))


def model(graph_bytes: bytes, opset: int, ir_version: int, producer: str) -> bytes:
    """A ModelProto of one graph using the default operator domain at ``opset``."""
    return (_int(1, ir_version) + _str(2, producer) + _bytes(7, graph_bytes)
            + _bytes(8, _str(1, "") + _int(2, opset)))
