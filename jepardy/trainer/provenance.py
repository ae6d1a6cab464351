"""What a run ran on and with: versions, devices, host, and the data files it read.

The study's logs came from another script than the one it shipped. Every result.json
therefore carries this record beside the code files that ran (export.loaded_code_files),
so `jepardy show RUN_ID` can say exactly what produced a number.
"""

from __future__ import annotations

import hashlib
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import torch

from jepardy.data.shards import HEADER_BYTES, list_shards


def runtime_provenance(device: torch.device, world_size: int) -> dict[str, Any]:
    """Python, torch, CUDA and cuDNN versions; the accelerator's model and count; the host."""
    cuda = device.type == "cuda"
    return {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if cuda else None,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "gpu_name": torch.cuda.get_device_name(device) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "world_size": world_size,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "executable": sys.executable,
    }


def data_provenance(data_dir: str, tokenizer_path: str) -> dict[str, Any]:
    """Every shard's size and the sha256 of its header (which holds its token count), and
    the tokenizer's size and sha256. Hashing headers, not whole shards, keeps this cheap on
    FineWeb's 200 MB shards while still telling two data sets apart."""
    shards = {}
    for split in ("train", "val"):
        for path in list_shards(Path(data_dir), split):
            with path.open("rb") as f:
                header = f.read(HEADER_BYTES)
            shards[path.name] = {
                "bytes": path.stat().st_size,
                "header_sha256": hashlib.sha256(header).hexdigest(),
            }
    record: dict[str, Any] = {"data_dir": str(Path(data_dir).resolve()), "shards": shards}
    if tokenizer_path:
        blob = Path(tokenizer_path).read_bytes()
        record["tokenizer"] = {
            "path": str(Path(tokenizer_path).resolve()),
            "bytes": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
        }
    return record
