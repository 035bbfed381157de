# Minimal hand-written safetensors reader/writer (no safetensors package), used by
# hf_reference.py, the independent reimplementation of the HF modelling code that
# serves as the reference in remora's tests.
import json
import struct

import torch

_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
           "I64": torch.int64, "I32": torch.int32}


def load(path):
    """Return {name: tensor} for every tensor in the file (metadata is ignored)."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: unsupported dtype {info['dtype']} for {name}")
        dtype, shape = _DTYPES[info["dtype"]], info["shape"]
        begin, end = info["data_offsets"]
        count = end - begin
        itemsize = torch.tensor([], dtype=dtype).element_size()
        if count == 0:
            t = torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(data, dtype=dtype, count=count // itemsize, offset=base + begin)
        out[name] = t.reshape(shape).clone()
    return out


def save(tensors, path):
    """Write {name: tensor} as F32 tensors with metadata {"format": "pt"}."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)  # pad so the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
