"""Storing pruned networks: byte formats for a state_dict, from PyTorch's dense and COO files to compact ones.

Sec. 4.3 and Table 1 of Arnob et al. 2021 store each tensor with ``torch.save`` after ``Tensor.to_sparse()``
(COO: an int64 index per dimension and an fp32 value per nonzero, 20 bytes per weight of a matrix, five
times the dense 4), which makes a dense network 5x larger and a 95%-sparse one about 4x smaller. Simple
formats do much better: CSR with the smallest index dtypes that fit, or a one-bit-per-weight bitmask with
the nonzero values (fp32, lossless; or fp16, values rounded), optionally with the bitmask and values
entropy-coded by ``lzma``. Every blob starts with a small self-describing header, so
:func:`decode_weights` needs nothing but the bytes.
"""
from __future__ import annotations

import copy
import io
import json
import lzma
import struct
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from .. import checks
from .masks import remove_masks

__all__ = [
    "STORAGE_FORMATS",
    "LOSSLESS_FORMATS",
    "pruned_state_dict",
    "encode_weights",
    "decode_weights",
    "storage_size",
    "decoded_reference",
    "SparseLinear",
    "sparse_inference_copy",
]

STORAGE_FORMATS = ("dense", "coo", "csr", "csr-fp16", "bitmask", "bitmask-fp16", "bitmask-lzma", "bitmask-fp16-lzma")
"""``dense``: ``torch.save`` of the fp32 tensors (the paper's "Dense Model"). ``coo``: ``torch.save`` of
``t.to_sparse()`` for every tensor (the paper's sparse indexing). ``csr``: per matrix, row pointers and column
indices in the smallest unsigned dtype that holds them, plus the nonzero values. ``bitmask``: one bit per
entry (nonzero or not) plus the nonzero values. ``-fp16``: values stored as fp16 (rounded: lossy).
``-lzma``: the data section (bitmask and values) compressed with ``lzma`` (xz preset 6)."""
LOSSLESS_FORMATS = tuple(f for f in STORAGE_FORMATS if "fp16" not in f)

MAGIC = b"LRSW"  # Lean & Robust sparse weights
VERSION = 1
FP16_MAX = float(np.finfo(np.float16).max)
_INDEX_DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64)


def _check_weights(weights: object) -> dict[str, Tensor]:
    if isinstance(weights, nn.Module):
        raise ValueError("weights must be a state_dict (dict of tensors); for a model use pruned_state_dict(model)")
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"weights must be a non-empty dict of tensors, got {type(weights).__name__}")
    out: dict[str, Tensor] = {}
    for name, t in weights.items():
        if not isinstance(name, str):
            raise ValueError(f"weights keys must be strings, got {name!r}")
        if not isinstance(t, Tensor) or t.layout != torch.strided:
            raise ValueError(f"weights[{name!r}] must be a dense (strided) tensor, got {type(t).__name__}")
        if t.dtype in (torch.bfloat16,) or t.is_complex():
            raise ValueError(f"weights[{name!r}] has dtype {t.dtype}; supported: real dtypes numpy has (float32, ...)")
        if name.endswith(("_mask", "_orig")):
            raise ValueError(
                f"weights has key {name!r} from a masked model; pass pruned_state_dict(model) (effective weights)"
            )
        out[name] = t.detach().cpu().contiguous()
    return out


def pruned_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The model's ``state_dict`` with every pruned weight as its effective value ``weight_orig * weight_mask``.

    The file a pruned network is deployed as: the names of the unpruned model, no masks (the zeros are in the
    weights). The model is not changed; tensors are detached CPU copies.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    state = model.state_dict()
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state:
            continue
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state:
            base = key[: -len("_orig")]
            mask = state[base + "_mask"]
            out[base] = (value.detach() * mask.to(value.dtype)).cpu().clone()
        else:
            out[key] = value.detach().cpu().clone()
    return out


# -- byte layout ------------------------------------------------------------------------------------------
def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _smallest_uint(max_value: int) -> np.dtype:
    for dtype in _INDEX_DTYPES:
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"index {max_value} does not fit in uint64")


def _encode_tensor(t: Tensor, kind: str, fp16: bool) -> tuple[dict, list[bytes]]:
    """One tensor as a header entry and its byte segments: the smaller of ``kind`` and raw dense values."""
    array = t.numpy()
    value_dtype = array.dtype
    if fp16 and array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        if finite.size and float(np.abs(finite).max()) > FP16_MAX:
            raise ValueError(f"a weight of magnitude {float(np.abs(finite).max()):g} overflows fp16 (max {FP16_MAX:g})")
        value_dtype = np.dtype(np.float16)
    flat = array.reshape(-1)
    entry = {"dtype": str(array.dtype), "shape": list(array.shape), "values": str(value_dtype)}
    raw = flat.astype(value_dtype)
    nonzero = flat != 0
    nnz = int(nonzero.sum())
    if kind == "bitmask":
        sparse_size = (flat.size + 7) // 8 + nnz * value_dtype.itemsize
    else:  # csr on a (rows, numel / rows) view
        rows = array.shape[0] if array.ndim >= 2 else 1
        cols = flat.size // rows if rows else 0
        ptr_dtype, col_dtype = _smallest_uint(nnz), _smallest_uint(max(cols - 1, 0))
        sparse_size = (rows + 1) * ptr_dtype.itemsize + nnz * (col_dtype.itemsize + value_dtype.itemsize)
    if flat.size == 0 or sparse_size >= raw.nbytes:
        entry["enc"] = "raw"
        return entry, [raw.tobytes()]
    entry["enc"] = kind
    values = flat[nonzero].astype(value_dtype).tobytes()
    if kind == "bitmask":
        return entry, [np.packbits(nonzero).tobytes(), values]
    matrix = nonzero.reshape(rows, cols)
    row_counts = matrix.sum(axis=1)
    row_ptr = np.concatenate([[0], np.cumsum(row_counts)]).astype(ptr_dtype)
    col_idx = np.nonzero(matrix)[1].astype(col_dtype)  # row-major order, as flat[nonzero]
    entry.update(rows=rows, ptr=str(ptr_dtype), col=str(col_dtype))
    return entry, [row_ptr.tobytes(), col_idx.tobytes(), values]


def _decode_tensor(entry: dict, data: memoryview, offset: int) -> tuple[Tensor, int]:
    dtype, value_dtype, shape = np.dtype(entry["dtype"]), np.dtype(entry["values"]), tuple(entry["shape"])
    numel = int(np.prod(shape, dtype=np.int64))

    def take(n_bytes: int) -> memoryview:
        nonlocal offset
        if offset + n_bytes > len(data):
            raise ValueError("blob is truncated or corrupt (a tensor's data runs past the end)")
        chunk = data[offset: offset + n_bytes]
        offset += n_bytes
        return chunk

    if entry["enc"] == "raw":
        flat = np.frombuffer(take(numel * value_dtype.itemsize), dtype=value_dtype).astype(dtype)
    elif entry["enc"] == "bitmask":
        bits = np.unpackbits(np.frombuffer(take((numel + 7) // 8), dtype=np.uint8), count=numel).astype(bool)
        nnz = int(bits.sum())
        flat = np.zeros(numel, dtype=dtype)
        flat[bits] = np.frombuffer(take(nnz * value_dtype.itemsize), dtype=value_dtype)
    elif entry["enc"] == "csr":
        rows = int(entry["rows"])
        ptr_dtype, col_dtype = np.dtype(entry["ptr"]), np.dtype(entry["col"])
        row_ptr = np.frombuffer(take((rows + 1) * ptr_dtype.itemsize), dtype=ptr_dtype).astype(np.int64)
        nnz = int(row_ptr[-1])
        col_idx = np.frombuffer(take(nnz * col_dtype.itemsize), dtype=col_dtype).astype(np.int64)
        values = np.frombuffer(take(nnz * value_dtype.itemsize), dtype=value_dtype)
        cols = numel // rows if rows else 0
        row_idx = np.repeat(np.arange(rows, dtype=np.int64), np.diff(row_ptr))
        flat = np.zeros(numel, dtype=dtype)
        flat[row_idx * cols + col_idx] = values
    else:
        raise ValueError(f"blob has an unknown tensor encoding {entry['enc']!r}")
    return torch.from_numpy(flat.reshape(shape).copy()), offset


def encode_weights(weights: Mapping[str, Tensor], fmt: str) -> bytes:
    """Encode a state_dict (e.g. :func:`pruned_state_dict`) as one self-describing blob in format ``fmt``.

    ``dense`` and ``coo`` are ``torch.save`` files, as in Table 1 of Arnob et al. 2021; the others are the
    compact layouts of :data:`STORAGE_FORMATS`. Each tensor of a compact format falls back to its raw dense
    values when that is smaller (a dense bias costs no bitmask).
    """
    fmt = checks.choice("fmt", fmt, STORAGE_FORMATS)
    tensors = _check_weights(weights)
    head = MAGIC + bytes([VERSION, len(fmt)]) + fmt.encode("ascii")
    if fmt == "dense":
        return head + _torch_bytes(tensors)
    if fmt == "coo":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return head + _torch_bytes({name: t.to_sparse() for name, t in tensors.items()})
    kind, fp16 = fmt.split("-")[0], "fp16" in fmt
    entries, segments = [], []
    for name, t in tensors.items():
        entry, parts = _encode_tensor(t, kind, fp16)
        entries.append([name, entry])
        segments.extend(parts)
    data = b"".join(segments)
    if fmt.endswith("-lzma"):
        data = lzma.compress(data, preset=6)
    meta = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    return head + struct.pack("<I", len(meta)) + meta + data


def decode_weights(blob: bytes) -> dict[str, Tensor]:
    """The state_dict stored in ``blob`` (from :func:`encode_weights`): dense CPU tensors, original dtypes.

    Exact for the lossless formats; the ``-fp16`` formats give the fp16-rounded values (:func:`decoded_reference`).
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ValueError(f"blob must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < 6 or blob[:4] != MAGIC:
        raise ValueError("blob is not an encode_weights blob (missing the LRSW header)")
    if blob[4] != VERSION:
        raise ValueError(f"blob has format version {blob[4]}, this code reads version {VERSION}")
    n = blob[5]
    fmt = blob[6: 6 + n].decode("ascii", errors="replace")
    if fmt not in STORAGE_FORMATS:
        raise ValueError(f"blob names an unknown format {fmt!r}; known: {STORAGE_FORMATS}")
    body = blob[6 + n:]
    if fmt in ("dense", "coo"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(body), weights_only=True)
        return {name: (t.to_dense() if t.layout != torch.strided else t) for name, t in state.items()}
    if len(body) < 4:
        raise ValueError("blob is truncated (no metadata length)")
    (meta_len,) = struct.unpack("<I", body[:4])
    entries = json.loads(body[4: 4 + meta_len].decode("utf-8"))
    data = body[4 + meta_len:]
    if fmt.endswith("-lzma"):
        data = lzma.decompress(data)
    view, offset, out = memoryview(data), 0, {}
    for name, entry in entries:
        out[name], offset = _decode_tensor(entry, view, offset)
    if offset != len(data):
        raise ValueError(f"blob has {len(data) - offset} unread bytes after the last tensor (corrupt)")
    return out


def storage_size(weights: Mapping[str, Tensor], fmt: str) -> int:
    """Bytes of ``encode_weights(weights, fmt)``, header included (Table 1 of Arnob et al. counts file bytes)."""
    return len(encode_weights(weights, fmt))


def decoded_reference(weights: Mapping[str, Tensor], fmt: str) -> dict[str, Tensor]:
    """What ``decode_weights(encode_weights(weights, fmt))`` must equal exactly: ``weights`` for lossless
    formats, every floating tensor rounded to fp16 (and back to its dtype) for the ``-fp16`` formats."""
    fmt = checks.choice("fmt", fmt, STORAGE_FORMATS)
    tensors = _check_weights(weights)
    if fmt in LOSSLESS_FORMATS:
        return {name: t.clone() for name, t in tensors.items()}
    return {name: (t.half().to(t.dtype) if t.is_floating_point() else t.clone()) for name, t in tensors.items()}


# -- sparse inference -------------------------------------------------------------------------------------
class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` held as a sparse CSR tensor (``torch.sparse_csr``); inference only.

    Computed as ``(W x^T)^T`` (sparse times dense), PyTorch's fast CSR path on the CPU.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            self.register_buffer("weight", linear.weight.detach().to_sparse_csr())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: Tensor) -> Tensor:
        # W @ x^T with W sparse on the left: the fast CPU path (F.linear(x, W_csr) is several times slower here).
        # The result stays transposed in memory, so the next layer's x^T is contiguous for free.
        flat = x.reshape(-1, self.in_features)
        y = torch.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        nnz = int(self.weight._nnz())
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={nnz}"


def _non_leaf_attributes(model: nn.Module) -> list[Tensor]:
    found = []
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, Tensor) and not value.is_leaf:
                found.append(value)
    return found


def sparse_inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (masks made permanent) with every ``nn.Linear`` replaced by :class:`SparseLinear`.

    For timing sparse against dense inference on the CPU; the model's own ``forward`` is used unchanged.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    # A pruned layer's ``weight`` is a non-leaf tensor (weight_orig * weight_mask), which deepcopy refuses.
    memo = {id(t): t.detach().clone() for t in _non_leaf_attributes(model)}
    clone = copy.deepcopy(model, memo)
    remove_masks(clone)

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, SparseLinear(child))
            else:
                swap(child)

    swap(clone)
    return clone.eval()
