"""The run's final weights, kept beside the artifact so that the export can be redone with
other quantization or compression settings without training again (`export_run.py`).

RUN_DIR/final.pt holds, for the GPT alone (never the JEPA predictor nor the target encoder):
the format tag, the run id, the resolved TrainConfig (all fields) and the float state dict
after the weight EMA was applied, exactly what the run exported.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from jepardy.errors import UserError
from jepardy.trainer.config import TrainConfig

CHECKPOINT_FILE = "final.pt"
FORMAT_TAG = "jepardy-final-v1"


def save_final(
    path: Path, state: dict[str, torch.Tensor], config: TrainConfig, run_id: str
) -> None:
    """Write the checkpoint atomically (a reader never sees half a file)."""
    doc = {
        "format": FORMAT_TAG,
        "run_id": run_id,
        "config": asdict(config),
        "state_dict": {name: t.detach().cpu() for name, t in state.items()},
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(doc, tmp)
    tmp.replace(path)


def load_final(path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(run id, config params, state dict) of a checkpoint; UserError when it is missing or
    not one of ours."""
    if not path.is_file():
        raise UserError(
            f"{path}: not found; only runs that finished with this trainer have final weights"
        )
    doc = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_TAG:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise UserError(f"{path}: format {found!r}; expected {FORMAT_TAG!r}")
    return str(doc["run_id"]), dict(doc["config"]), dict(doc["state_dict"])
