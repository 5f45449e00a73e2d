"""A trace's edge order in JSON: the ``E`` edge ids in greedy order and their weights, each as the
little-endian bytes of its array, zlib-compressed and base64-encoded (about 5 bytes per edge; ids in
int32 where every id fits, else int64; weights in float32, as computed). numpy only.

    {"encoding": "zlib+base64", "length": E, "ids_dtype": "<i4", "weights_dtype": "<f4",
     "ids": "eJz...", "weights": "eJz..."}
"""

from __future__ import annotations

import base64
import binascii
import zlib

import numpy as np

ENCODING = "zlib+base64"
_ID_DTYPES = ("<i4", "<i8")
_WEIGHT_DTYPES = ("<f4", "<f8")


class OrderError(ValueError):
    """An order block that cannot be decoded; the message says why."""


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(array.tobytes(), 1)).decode("ascii")


def encode_order(ids: np.ndarray, weights: np.ndarray) -> dict:
    """The JSON block of an edge order: ``ids [E]`` (integers) and ``weights [E]``."""
    ids = np.asarray(ids)
    weights = np.asarray(weights)
    id_dtype = "<i4" if ids.size == 0 or int(ids.max()) < 2**31 else "<i8"
    weight_dtype = "<f4" if weights.dtype == np.float32 else "<f8"
    return {
        "encoding": ENCODING,
        "length": int(ids.size),
        "ids_dtype": id_dtype,
        "weights_dtype": weight_dtype,
        "ids": _pack(ids.astype(id_dtype)),
        "weights": _pack(weights.astype(weight_dtype)),
    }


def _unpack(block: dict, key: str, dtypes: tuple[str, ...], length: int, limit: int) -> np.ndarray:
    dtype = block.get(f"{key}_dtype")
    if dtype not in dtypes:
        raise OrderError(f"order: unknown {key} type {dtype!r} (expected one of {', '.join(dtypes)})")
    text = block.get(key)
    if not isinstance(text, str):
        raise OrderError(f"order: '{key}' is missing or not text")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw, limit + 1)
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise OrderError(f"order: '{key}' is not {ENCODING} data ({exc})") from None
    expected = length * np.dtype(dtype).itemsize
    if len(data) != expected or inflater.unconsumed_tail or not inflater.eof:
        raise OrderError(f"order: '{key}' holds {len(data)} bytes where {length} values need {expected}")
    return np.frombuffer(data, dtype=dtype)


def decode_order(block: object, n_edges: int, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [E] int64, weights [E] float32 or float64)`` from a block of :func:`encode_order`, checked
    against the graph: ``n_edges`` ids, each below ``n_ids``, none twice. Raises :class:`OrderError`."""
    if not isinstance(block, dict):
        raise OrderError("order: not an object")
    if block.get("encoding") != ENCODING:
        raise OrderError(f"order: unknown encoding {block.get('encoding')!r} (expected {ENCODING!r})")
    length = block.get("length")
    if isinstance(length, bool) or not isinstance(length, int) or length != n_edges:
        raise OrderError(f"order: {length!r} edges for a graph of {n_edges}")
    ids = _unpack(block, "ids", _ID_DTYPES, length, length * 8).astype(np.int64)
    weights = _unpack(block, "weights", _WEIGHT_DTYPES, length, length * 8)
    if length and (int(ids.min()) < 0 or int(ids.max()) >= n_ids):
        raise OrderError(f"order: an edge id outside the graph's {n_ids} ids")
    seen = np.zeros(n_ids, dtype=bool)
    seen[ids] = True
    if int(np.count_nonzero(seen)) != length:
        raise OrderError("order: an edge appears twice")
    if weights.dtype == np.float32:
        weights = weights.astype(np.float32)  # a writable copy
    else:
        weights = weights.astype(np.float64)
    return ids, weights
