"""The training entry point: `torchrun ... -m jepardy.trainer --config run.json --out RUN_DIR`.

Only `main()` touches the environment, process groups, seeds and backend flags. It reads a
run.json written by the orchestrator, trains under a wallclock budget and an iteration cap,
exports the artifact, scores it round-trip from disk, and writes RUN_DIR/result.json (see
docs/architecture.md for its fields). Exit code 0 when the run is done, 1 when it failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from jepardy.data.tokenizer import ByteTables, byte260_tables, sentencepiece_byte_tables
from jepardy.errors import UserError
from jepardy.trainer.config import ARTIFACT_CAP_BYTES, TrainConfig, config_from_params
from jepardy.trainer.data import TrainBatches, load_val_tokens
from jepardy.trainer.eval import ByteCounter, EvalResult, autocast, evaluate
from jepardy.trainer.export import (
    code_digest,
    deserialize_model,
    loaded_code_files,
    serialize_model,
)
from jepardy.trainer.jepa import JepaSettings, TargetEncoder, TrainingObjective
from jepardy.trainer.model import GPT, GPTShape, count_params
from jepardy.trainer.optim import (
    ParamGroup,
    WeightEMA,
    assign_groups,
    build_optimizer,
    clip_grad_norms,
    group_rules,
    group_table,
    lr_multiplier,
    set_lr,
)

MODEL_FILE = "model.intq.zst"


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class RunLog:
    """`key:value` lines to stdout and train.log, metric points to metrics.jsonl (rank 0)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            self._log = (out_dir / "train.log").open("a")
            self._metrics = (out_dir / "metrics.jsonl").open("a")

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)
            self._log.write(text + "\n")
            self._log.flush()

    def metrics(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self._metrics.write(json.dumps({"step": step, "name": name, "value": value}) + "\n")
        self._metrics.flush()
        self.line(f"step:{step} " + " ".join(f"{k}:{v:.6g}" for k, v in values.items()))

    def close(self) -> None:
        if self.enabled:
            self._log.close()
            self._metrics.close()


def init_distributed(device_setting: str) -> Dist:
    """Join torchrun's process group when launched by it; nccl on CUDA, gloo on CPU."""
    use_cuda = device_setting == "cuda" or (device_setting == "auto" and torch.cuda.is_available())
    if device_setting == "cuda" and not torch.cuda.is_available():
        raise UserError("config: device: 'cuda' requested but no CUDA device is available")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world > 1:
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None
        )
    return Dist(rank=rank, world=world, device=device)


def byte_tables(config: TrainConfig) -> ByteTables:
    if config.tokenizer_path:
        path = Path(config.tokenizer_path)
        if not path.is_file():
            raise UserError(f"config: tokenizer_path: {path} not found; run `jepardy data build`")
        return sentencepiece_byte_tables(path, config.vocab_size)
    return byte260_tables()


def build_objective(config: TrainConfig, device: torch.device) -> TrainingObjective:
    shape = GPTShape(
        vocab_size=config.vocab_size,
        n_layers=config.n_layers,
        d_model=config.d_model,
        n_heads=config.n_heads,
        n_kv_heads=config.n_kv_heads,
        mlp_mult=config.mlp_mult,
        rope_base=config.rope_base,
        logit_softcap=config.logit_softcap,
        init_std=config.init_std,
    )
    gpt = GPT(shape)
    jepa, target_encoder = None, None
    if config.jepa_weight > 0:
        jepa = JepaSettings(
            config.jepa_weight,
            config.jepa_patch_size,
            config.jepa_var_weight,
            config.jepa_std_target,
        )
        if config.jepa_target == "ema":
            target_encoder = TargetEncoder(gpt.embed.weight, config.jepa_target_ema_decay)
    return TrainingObjective(gpt, jepa, target_encoder).to(device)


def group_drift(
    groups: list[ParamGroup], initial: dict[str, list[torch.Tensor]]
) -> dict[str, float]:
    """||w_end - w_init|| / ||w_init|| per optimizer group: a group that did not move is loud."""
    drift = {}
    for g in groups:
        delta = math.sqrt(
            sum(
                float((p.detach().float() - w0).square().sum())
                for p, w0 in zip(g.params, initial[g.name], strict=True)
            )
        )
        norm = math.sqrt(sum(float(w0.square().sum()) for w0 in initial[g.name]))
        drift[g.name] = delta / norm if norm > 0 else delta
    return drift


def train(config: TrainConfig, env: Dist, log: RunLog, out_dir: Path) -> dict[str, Any]:
    """Train, export to `out_dir`, score; returns the result fields (status excluded)."""
    torch.manual_seed(config.seed)
    tables = byte_tables(config)
    batches = TrainBatches(
        config.data_dir, config.train_batch_tokens, config.seq_len, env.rank, env.world, env.device
    )
    val_tokens = load_val_tokens(config.data_dir, config.seq_len, config.val_max_tokens)
    counter = ByteCounter(tables, env.device)
    objective = build_objective(config, env.device)
    gpt = objective.gpt
    groups = assign_groups(objective, group_rules(config))
    optimizer = build_optimizer(groups, config)
    initial = {g.name: [p.detach().float().clone() for p in g.params] for g in groups}
    model = (
        DistributedDataParallel(objective, broadcast_buffers=False) if env.world > 1 else objective
    )
    ema = WeightEMA(gpt, config.ema_decay) if config.ema else None

    log.line(f"model_params:{count_params(gpt)} world_size:{env.world} device:{env.device}")
    for line in group_table(groups):
        log.line(line)

    def score(tag: str) -> EvalResult:
        result = evaluate(
            gpt,
            val_tokens,
            counter,
            config.seq_len,
            config.val_batch_tokens,
            env.rank,
            env.world,
            env.device,
        )
        log.line(f"{tag} val_loss:{result.val_loss:.6f} val_bpb:{result.val_bpb:.6f}")
        return result

    step, train_time_s, nonfinite = 0, 0.0, torch.zeros((), dtype=torch.bool, device=env.device)
    last_jepa, last_std = None, None
    # The clock counts training only: it is paused around the periodic evaluations.
    # On CUDA, perf_counter sees queued kernels late by at most a few steps, as in the challenge.
    segment_start = time.perf_counter()
    while step < config.iterations:
        elapsed = train_time_s + time.perf_counter() - segment_start
        if config.wallclock_s > 0 and budget_spent(elapsed, config.wallclock_s, env):
            log.line(
                f"stopping_early: wallclock_cap train_time:{elapsed * 1000:.0f}ms "
                f"step:{step}/{config.iterations}"
            )
            break
        set_lr(optimizer, lr_multiplier(step, elapsed, config))
        x, y = batches.next_batch()
        with autocast(env.device):
            losses = model(x, y)
        losses.total.backward()
        grad_norms = clip_grad_norms(groups, config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if objective.target_encoder is not None:
            objective.target_encoder.update(gpt.embed.weight)
        if ema is not None:
            ema.update(gpt)
        nonfinite |= ~torch.isfinite(losses.total.detach())
        step += 1
        if step % config.log_every == 0 or step == config.iterations:
            # Host sync, on log steps only.
            if bool(nonfinite):
                raise NonFiniteLoss(f"non-finite loss by step {step}")
            tracked = {"train_loss": losses.cross_entropy}
            if losses.jepa is not None:
                tracked |= {"jepa_loss": losses.jepa, "jepa_pred_std": losses.jepa_pred_std}
            values = mean_over_ranks(tracked, env)
            values |= {f"grad_norm_{k}": float(v) for k, v in grad_norms.items()}
            values["lr_mult"] = lr_multiplier(step - 1, elapsed, config)
            last_jepa, last_std = values.get("jepa_loss"), values.get("jepa_pred_std")
            log.metrics(step, values)
        if config.val_every and step % config.val_every == 0:
            train_time_s += time.perf_counter() - segment_start
            r = score(f"step:{step}")
            log.metrics(step, {"val_loss": r.val_loss, "val_bpb": r.val_bpb})
            segment_start = time.perf_counter()
    train_time_s += time.perf_counter() - segment_start
    if bool(nonfinite):
        raise NonFiniteLoss(f"non-finite loss by step {step}")

    eval_start = time.perf_counter()
    drift = group_drift(groups, initial)
    if ema is not None:
        ema.copy_to(gpt)
    prequant = score("pre-quantization")
    if env.is_main:
        blob = serialize_model(gpt.state_dict(), config.quant_bits, config.zstd_level)
        tmp = out_dir / (MODEL_FILE + ".tmp")
        tmp.write_bytes(blob)
        tmp.replace(out_dir / MODEL_FILE)
    if env.world > 1:
        dist.barrier()
    # Score the artifact as read back from disk, as the challenge does.
    model_bytes = (out_dir / MODEL_FILE).stat().st_size
    gpt.load_state_dict(deserialize_model((out_dir / MODEL_FILE).read_bytes()))
    final = score(f"final_int{config.quant_bits}_zstd_roundtrip")
    eval_time_s = time.perf_counter() - eval_start

    code_files = loaded_code_files()
    code_bytes = sum(f.bytes_total for f in code_files)
    artifact_bytes = code_bytes + model_bytes
    log.line(f"Serialized model int{config.quant_bits}+zstd: {model_bytes} bytes")
    log.line(f"Code size: {code_bytes} bytes")
    log.line(f"Total submission size int{config.quant_bits}+zstd: {artifact_bytes} bytes")
    for name, value in drift.items():
        log.line(f"drift:{name} {value:.6g}")
    return {
        "val_loss": final.val_loss,
        "val_bpb": final.val_bpb,
        "prequant_val_loss": prequant.val_loss,
        "prequant_val_bpb": prequant.val_bpb,
        "val_tokens": final.tokens,
        "val_bytes": final.bytes_total,
        "artifact_bytes": artifact_bytes,
        "model_bytes": model_bytes,
        "code_bytes": code_bytes,
        "under_cap": artifact_bytes <= ARTIFACT_CAP_BYTES,
        "code_sha256": code_digest(code_files),
        "code_files": {f.path: {"bytes": f.bytes_total, "sha256": f.sha256} for f in code_files},
        "steps": step,
        "train_time_s": train_time_s,
        "eval_time_s": eval_time_s,
        "tokens_per_s": step * config.train_batch_tokens / train_time_s if train_time_s else 0.0,
        "jepa_loss": last_jepa,
        "jepa_pred_std": last_std,
        "group_drift": drift,
        "n_params": count_params(gpt),
    }


def mean_over_ranks(tensors: dict[str, torch.Tensor], env: Dist) -> dict[str, float]:
    """Average scalar tensors over ranks (a host sync: call on log steps only)."""
    stacked = torch.stack([t.detach().float() for t in tensors.values()])
    if env.world > 1:
        dist.all_reduce(stacked)
        stacked /= env.world
    return dict(zip(tensors, stacked.tolist(), strict=True))


def budget_spent(elapsed_s: float, budget_s: float, env: Dist) -> bool:
    """Whether any rank's clock has passed the budget; all ranks agree, so none hangs."""
    if env.world == 1:
        return elapsed_s >= budget_s
    flag = torch.tensor([1.0 if elapsed_s >= budget_s else 0.0], device=env.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def write_result(out_dir: Path, result: dict[str, Any]) -> None:
    """Atomically write result.json (a reader never sees half a file)."""
    tmp = out_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True, allow_nan=True) + "\n")
    tmp.replace(out_dir / "result.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jepardy.trainer", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="run.json from the orchestrator")
    parser.add_argument("--out", required=True, type=Path, help="run directory to write into")
    return parser.parse_args(argv)


def read_config(path: Path) -> tuple[str, TrainConfig]:
    """(run_id, config) from a run.json; every mistake is a one-line UserError."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
        raise UserError(f'{path}: params: missing; expected {{"run_id": ..., "params": {{...}}}}')
    return str(doc.get("run_id", "")), config_from_params(doc["params"], source=f"{path}: params")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", 0))
    result: dict[str, Any] = {
        "status": "failed",
        "reason": "",
        "run_id": "",
        "host": socket.gethostname(),
        "torch_version": torch.__version__,
    }
    log = RunLog(args.out, enabled=rank == 0)
    env = None
    try:
        result["run_id"], config = read_config(args.config)
        env = init_distributed(config.device)
        if env.is_main:
            (args.out / "config.json").write_text(json.dumps(asdict(config), indent=1) + "\n")
        result |= {"world_size": env.world, "device": str(env.device)}
        result |= train(config, env, log, args.out)
        result["status"] = "done"
    except NonFiniteLoss as err:
        result["reason"] = "nan"
        log.line(f"failed: nan: {err}")
    except UserError as err:
        result["reason"] = f"error: {err}"
        log.line(f"failed: {err}")
    finally:
        if env is not None and env.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        write_result(args.out, result)
    log.close()
    return 0 if result["status"] == "done" else 1
