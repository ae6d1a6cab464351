"""Re-export a finished run with other quantization or compression settings, no training:
the study's storage-only pass.

    python -m jepardy.trainer.export_run --run-dir RUN_DIR --out OUT_DIR \\
        [--quant-bits N] [--zstd-level L] [--target-bytes N] [--eval-stride S]
        [--device auto|cpu|cuda] [--run-id ID]

(or under `torchrun --nproc_per_node=N`, the evaluation then split over the ranks).

It loads RUN_DIR/final.pt (the weights the run exported, after EMA), writes the artifact with
the new settings to OUT_DIR/model.intq.zst, scores it read back from disk exactly as the
training run scores its own (scoring.py), and writes OUT_DIR/result.json: the training run's
fields that describe the weights (steps, train time, pre-quantization score, ...) copied from
RUN_DIR/result.json and listed in `copied_from_parent`, the new artifact's fields measured
here. The artifact's code bytes are those of the code that trained the weights (the parent's
`code_bytes` and `code_sha256`); this process's own code is recorded as `export_code_*`,
and `code_changed_since_run` lists trainer files that differ from the ones the run used.
Like a training run it writes OUT_DIR/config.json (the resolved config, the export's own
settings in it) and records its data and runtime (provenance.py), so `jepardy show` and
`jepardy diff` see what it ran with. Exit code 0 when done, 1 when failed (the reason in
result.json).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from jepardy.errors import UserError
from jepardy.trainer.checkpoint import CHECKPOINT_FILE, load_final
from jepardy.trainer.config import ARTIFACT_CAP_BYTES, config_from_params
from jepardy.trainer.data import load_val_tokens
from jepardy.trainer.distributed import init_distributed
from jepardy.trainer.eval import ByteCounter
from jepardy.trainer.export import code_digest, loaded_code_files
from jepardy.trainer.model import GPT, GPTShape
from jepardy.trainer.provenance import data_provenance, runtime_provenance
from jepardy.trainer.scoring import Scorer, model_budget_bytes, score_roundtrip
from jepardy.trainer.train import byte_tables, uses_compile, write_result

# Fields of the parent's result.json that describe the trained weights, not the artifact.
PARENT_FIELDS = (
    "steps",
    "train_time_s",
    "tokens_per_s",
    "mfu",
    "prequant_val_loss",
    "prequant_val_bpb",
    "jepa_loss",
    "jepa_pred_std",
    "group_drift",
    "n_params",
    "code_bytes",
    "code_sha256",
    "code_files",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jepardy.trainer.export_run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--run-dir", required=True, type=Path, help="a finished run's directory")
    parser.add_argument("--out", required=True, type=Path, help="where the new artifact goes")
    parser.add_argument("--quant-bits", type=int, help="default: the run's quant_bits")
    parser.add_argument("--zstd-level", type=int, help="default: the run's zstd_level")
    parser.add_argument(
        "--target-bytes",
        type=int,
        help="model byte budget (default: the run's export_target_bytes, else the cap minus "
        "the run's code bytes)",
    )
    parser.add_argument("--eval-stride", type=int, help="default: the run's eval_stride")
    parser.add_argument("--device", help="auto | cpu | cuda (default: the run's device)")
    parser.add_argument("--run-id", default="", help="the id the orchestrator gives this export")
    return parser.parse_args(argv)


def read_parent_result(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "result.json"
    try:
        parent = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON: {err}") from None
    if parent.get("status") != "done":
        raise UserError(f"{path}: status {parent.get('status')!r}; only a done run re-exports")
    return parent


def changed_code(parent_files: dict[str, Any]) -> list[str]:
    """Trainer files loaded both here and by the parent run whose bytes differ: the
    re-export's serializer or model may then not be the code that trained the weights."""
    return sorted(
        f.path
        for f in loaded_code_files()
        if f.path.startswith("jepardy/trainer/")
        and f.path != "jepardy/trainer/export_run.py"
        and parent_files.get(f.path, {}).get("sha256") not in (None, f.sha256)
    )


def export(args: argparse.Namespace) -> dict[str, Any]:
    """Re-export and score; the result fields (status excluded)."""
    parent = read_parent_result(args.run_dir)
    parent_run, params, state = load_final(args.run_dir / CHECKPOINT_FILE)
    overrides = {
        "quant_bits": args.quant_bits,
        "zstd_level": args.zstd_level,
        "export_target_bytes": args.target_bytes,
        "eval_stride": args.eval_stride,
        "device": args.device,
    }
    params |= {k: v for k, v in overrides.items() if v is not None}
    config = config_from_params(params, source=f"{args.run_dir / CHECKPOINT_FILE}: config")
    env = init_distributed(config.device)
    if env.is_main:  # the resolved config, as a training run writes its own
        (args.out / "config.json").write_text(json.dumps(asdict(config), indent=1) + "\n")
    config = replace(config, device=str(env.device.type))
    gpt = GPT(GPTShape.from_config(config)).to(env.device)
    gpt.load_state_dict(state)
    val_tokens = load_val_tokens(config.data_dir, config.seq_len, config.val_max_tokens)
    counter = ByteCounter(byte_tables(config), env.device)
    # Compiled on CUDA as in training: the sliding-window pass is ~seq_len/stride forwards.
    forward = torch.compile(gpt, dynamic=False) if uses_compile(config, env.device) else gpt
    log = print_line if env.is_main else (lambda _text: None)
    scorer = Scorer(gpt, forward, val_tokens, counter, config, env, log)

    code_bytes = parent.get("code_bytes")
    if not isinstance(code_bytes, int):
        raise UserError(f"{args.run_dir / 'result.json'}: code_bytes missing")
    start = time.perf_counter()
    scored = score_roundtrip(scorer, args.out, model_budget_bytes(config, code_bytes))
    eval_time_s = time.perf_counter() - start

    artifact_bytes = code_bytes + scored["model_bytes"]
    mine = loaded_code_files()
    log(
        f"Total submission size int{config.quant_bits}+zstd{config.zstd_level}: "
        f"{artifact_bytes} bytes (model {scored['model_bytes']}, code {code_bytes})"
    )
    copied = [name for name in PARENT_FIELDS if name in parent]
    return {
        **{name: parent[name] for name in copied},
        **scored,
        "parent_run": parent_run,
        "copied_from_parent": copied,
        "quant_bits": config.quant_bits,
        "zstd_level": config.zstd_level,
        "export_target_bytes": config.export_target_bytes,
        "eval_stride": config.eval_stride,
        "artifact_bytes": artifact_bytes,
        "under_cap": artifact_bytes <= ARTIFACT_CAP_BYTES,
        "eval_time_s": eval_time_s,
        "export_code_sha256": code_digest(mine),
        "export_code_files": {f.path: {"bytes": f.bytes_total, "sha256": f.sha256} for f in mine},
        "code_changed_since_run": changed_code(parent.get("code_files", {})),
        "data": data_provenance(config.data_dir, config.tokenizer_path),
        **runtime_provenance(env.device, env.world),
        "device": str(env.device),
    }


def print_line(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "status": "failed",
        "reason": "",
        "run_id": args.run_id,
        "kind": "export",
        "host": socket.gethostname(),
        "torch_version": torch.__version__,
    }
    try:
        result |= export(args)
        result["status"] = "done"
    except UserError as err:
        result["reason"] = f"error: {err}"
        print_line(f"failed: {err}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", 0)) == 0:
        write_result(args.out, result)
    return 0 if result["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
