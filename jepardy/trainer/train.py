"""The training entry point: `torchrun ... -m jepardy.trainer --config run.json --out RUN_DIR`.

Only `main()` touches the environment, process groups, seeds and backend flags. It reads a
run.json written by the orchestrator, trains under a wallclock budget and an iteration cap,
saves the final weights, exports the artifact, scores it round-trip from disk, and writes
RUN_DIR/result.json (see docs/architecture.md for its fields). Exit code 0 when the run is
done, 1 when it failed.

On CUDA the step runs under bf16 autocast, the objective is torch.compile'd (unless
`compile = false`), attention goes through SDPA's flash or cuDNN kernels, and the step loop
never waits for the GPU except on log steps: the batch copy is asynchronous, the clock is
the host's, and under DDP the ranks agree on the budget one step late (`BudgetFlag`).
"""

from __future__ import annotations

import argparse
import contextlib
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
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from jepardy.data.tokenizer import ByteTables, byte260_tables, sentencepiece_byte_tables
from jepardy.errors import UserError
from jepardy.trainer.checkpoint import CHECKPOINT_FILE, save_final
from jepardy.trainer.config import ARTIFACT_CAP_BYTES, TrainConfig, config_from_params
from jepardy.trainer.data import TrainBatches, load_val_tokens
from jepardy.trainer.eval import ByteCounter, Forward, autocast
from jepardy.trainer.export import code_digest, loaded_code_files
from jepardy.trainer.health import GradHealth, group_grad_norms, module_drift
from jepardy.trainer.jepa import JepaSettings, StepLosses, TargetEncoder, TrainingObjective
from jepardy.trainer.model import GPT, GPTShape, count_params
from jepardy.trainer.optim import (
    Optimizers,
    ParamGroup,
    WeightEMA,
    assign_groups,
    build_optimizer,
    clip_grad_norms,
    group_rules,
    group_table,
    lr_multiplier,
    muon_momentum,
    set_lr,
    set_muon_momentum,
)
from jepardy.trainer.provenance import data_provenance, runtime_provenance
from jepardy.trainer.scoring import Scorer, score_roundtrip
from jepardy.trainer.throughput import flops_per_token, mfu


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

    @property
    def device_name(self) -> str:
        """The accelerator's name (for MFU), "cpu" on a CPU."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return "cpu"


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
        # Attention only through fused kernels (flash, cuDNN): a shape they cannot take is
        # an error here, never a silent fall-back to the slow paths.
        torch.backends.cuda.enable_flash_sdp(True)
        torch.backends.cuda.enable_cudnn_sdp(True)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_math_sdp(False)
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
    gpt = GPT(GPTShape.from_config(config))
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


def uses_compile(config: TrainConfig, device: torch.device) -> bool:
    return config.compile and device.type == "cuda"


def wrap_model(objective: TrainingObjective, config: TrainConfig, env: Dist) -> nn.Module:
    """The module forward/backward go through: the objective, compiled on CUDA, under DDP
    with several ranks. `objective` itself (the raw module) stays the handle for optimizer
    groups, EMA, checkpoints and export."""
    model: nn.Module = objective
    if uses_compile(config, env.device):
        model = torch.compile(objective, dynamic=False)
    if env.world > 1:
        model = DistributedDataParallel(model, broadcast_buffers=False)
    return model


@dataclass(frozen=True)
class StepStats:
    """One optimizer step's figures, as device tensors (read on log steps only)."""

    total: torch.Tensor
    cross_entropy: torch.Tensor
    jepa: torch.Tensor | None
    jepa_pred_std: torch.Tensor | None
    grad_norms: dict[str, torch.Tensor]
    group_grad_norms: dict[str, torch.Tensor]


def train_step(
    model: nn.Module,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
    optimizer: Optimizers,
    groups: list[ParamGroup],
    config: TrainConfig,
    device: torch.device,
    log_step: bool = False,
) -> StepStats:
    """Forward/backward over the micro-batches (gradients averaged; DDP all-reduces on the
    last one only), clip, step, zero. No host synchronisation."""
    n = len(micro_batches)
    parts: list[StepLosses] = []
    for i, (x, y) in enumerate(micro_batches):
        last = i == n - 1
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last else None
        with sync or contextlib.nullcontext():
            with autocast(device):
                losses = model(x, y)
            (losses.total / n).backward()
        parts.append(losses)
    per_group = group_grad_norms(groups) if log_step else {}
    grad_norms = clip_grad_norms(groups, config.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    def mean(values: list[torch.Tensor | None]) -> torch.Tensor | None:
        if values[0] is None:
            return None
        return torch.stack([v.detach() for v in values]).mean()

    return StepStats(
        total=mean([p.total for p in parts]),
        cross_entropy=mean([p.cross_entropy for p in parts]),
        jepa=mean([p.jepa for p in parts]),
        jepa_pred_std=mean([p.jepa_pred_std for p in parts]),
        grad_norms=grad_norms,
        group_grad_norms=per_group,
    )


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BudgetFlag:
    """Whether any rank's clock has passed the budget, agreed by all ranks so none hangs.

    One rank: its own host clock, no communication. Several: each step posts its flag (an
    all-reduce queued behind the step) and reads the flag posted one step earlier, so on
    CUDA the host waits for the previous step while the current one runs, never for the
    queue to drain. The run therefore stops one step after the clock ran out, on all ranks.
    """

    def __init__(self, env: Dist) -> None:
        self.env = env
        self.pending: torch.Tensor | None = None
        self.event = torch.cuda.Event() if env.device.type == "cuda" else None
        self.host = torch.zeros(1, pin_memory=env.device.type == "cuda")

    def spent(self, elapsed_s: float, budget_s: float) -> bool:
        if self.env.world == 1:
            return elapsed_s >= budget_s
        stop = self._read()
        flag = torch.full((1,), 1.0 if elapsed_s >= budget_s else 0.0, device=self.env.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if self.event is not None:
            self.host.copy_(flag, non_blocking=True)
            self.event.record()
        self.pending = flag
        return stop

    def _read(self) -> bool:
        if self.pending is None:
            return False
        if self.event is None:
            return bool(self.pending.item())  # gloo: already complete
        self.event.synchronize()
        return bool(self.host.item())


def train(
    config: TrainConfig, env: Dist, log: RunLog, out_dir: Path, run_id: str = ""
) -> dict[str, Any]:
    """Train, save final.pt, export to `out_dir`, score; the result fields (status excluded)."""
    torch.manual_seed(config.seed)
    tables = byte_tables(config)

    def new_batches() -> TrainBatches:
        return TrainBatches(
            config.data_dir,
            config.train_batch_tokens,
            config.seq_len,
            env.rank,
            env.world,
            env.device,
            config.micro_batch_tokens,
        )

    batches = new_batches()
    val_tokens = load_val_tokens(config.data_dir, config.seq_len, config.val_max_tokens)
    counter = ByteCounter(tables, env.device)
    objective = build_objective(config, env.device)
    gpt = objective.gpt
    groups = assign_groups(objective, group_rules(config))
    optimizer = build_optimizer(groups, config, env.rank, env.world, env.device)
    initial = {g.name: [p.detach().float().clone() for p in g.params] for g in groups}
    model = wrap_model(objective, config, env)
    compiled = uses_compile(config, env.device)
    # Evaluation runs the GPT alone (no predictor); compiled too when training is.
    forward: Forward = torch.compile(gpt, dynamic=False) if compiled else gpt

    log.line(f"model_params:{count_params(gpt)} world_size:{env.world} device:{env.device}")
    log.line(
        f"micro_steps:{batches.micro_steps} micro_batch_tokens:{batches.micro} "
        f"train_batch_tokens:{config.train_batch_tokens} seq_len:{config.seq_len}"
    )
    if env.device.type == "cuda":
        log.line(f"compile:{'on' if compiled else 'off'} autocast:bf16")
    else:
        log.line("compile:off autocast:off (torch.compile and bf16 are for CUDA; this is a CPU)")
    for line in group_table(groups):
        log.line(line)
    scorer = Scorer(
        gpt, forward, val_tokens, counter, config, env.rank, env.world, env.device, log.line
    )

    if config.compile_warmup_steps > 0:
        # Compile and warm the kernels outside the clock, then undo every effect.
        start = time.perf_counter()
        model_state = {k: v.detach().clone() for k, v in objective.state_dict().items()}
        optimizer_state = optimizer.state_dict()
        for _ in range(config.compile_warmup_steps):
            train_step(model, batches.next_step(), optimizer, groups, config, env.device)
        objective.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        batches = new_batches()
        synchronize(env.device)
        log.line(
            f"compile_warmup_steps:{config.compile_warmup_steps} "
            f"time:{time.perf_counter() - start:.1f}s (undone; not on the clock)"
        )
    ema = WeightEMA(gpt, config.ema_decay) if config.ema else None
    budget = BudgetFlag(env)

    step, train_time_s, nonfinite = 0, 0.0, torch.zeros((), dtype=torch.bool, device=env.device)
    grad_health = GradHealth()
    last_jepa, last_std = None, None
    # The clock counts training only: it is paused around the periodic evaluations. It is the
    # host's, which runs ahead of the GPU by at most a step or so; the GPU is waited for
    # (synchronize) only where the clock starts and stops.
    synchronize(env.device)
    segment_start = time.perf_counter()
    while step < config.iterations:
        elapsed = train_time_s + time.perf_counter() - segment_start
        if config.wallclock_s > 0 and budget.spent(elapsed, config.wallclock_s):
            log.line(
                f"stopping_early: wallclock_cap train_time:{elapsed * 1000:.0f}ms "
                f"step:{step}/{config.iterations}"
            )
            break
        set_lr(optimizer, lr_multiplier(step, elapsed, config))
        set_muon_momentum(optimizer, muon_momentum(step, config))
        log_step = (step + 1) % config.log_every == 0 or step + 1 == config.iterations
        stats = train_step(
            model, batches.next_step(), optimizer, groups, config, env.device, log_step
        )
        if objective.target_encoder is not None:
            objective.target_encoder.update(gpt.embed.weight)
        if ema is not None:
            ema.update(gpt)
        nonfinite |= ~torch.isfinite(stats.total)
        step += 1
        if step % config.log_every == 0 or step == config.iterations:
            # Host sync, on log steps only.
            if bool(nonfinite):
                raise NonFiniteLoss(f"non-finite loss by step {step}")
            tracked = {"train_loss": stats.cross_entropy}
            if stats.jepa is not None:
                tracked |= {"jepa_loss": stats.jepa, "jepa_pred_std": stats.jepa_pred_std}
            values = mean_over_ranks(tracked, env)
            values |= {f"grad_norm_{k}": float(v) for k, v in stats.grad_norms.items()}
            values |= {f"grad_norm_{k}": float(v) for k, v in stats.group_grad_norms.items()}
            values["clip_coef"] = grad_health.observe(values["grad_norm_model"], config.grad_clip)
            values["lr_mult"] = lr_multiplier(step - 1, elapsed, config)
            now = train_time_s + time.perf_counter() - segment_start
            values["tokens_per_s"] = step * config.train_batch_tokens / now
            step_mfu = mfu(values["tokens_per_s"], config, env.device_name, env.world)
            if step_mfu is not None:
                values["mfu"] = step_mfu
            last_jepa, last_std = values.get("jepa_loss"), values.get("jepa_pred_std")
            log.metrics(step, values)
        if config.val_every and step % config.val_every == 0:
            synchronize(env.device)
            train_time_s += time.perf_counter() - segment_start
            r = scorer.plain(f"step:{step}")
            log.metrics(step, {"val_loss": r.val_loss, "val_bpb": r.val_bpb})
            segment_start = time.perf_counter()
    synchronize(env.device)
    train_time_s += time.perf_counter() - segment_start
    if bool(nonfinite):
        raise NonFiniteLoss(f"non-finite loss by step {step}")
    tokens_per_s = step * config.train_batch_tokens / train_time_s if train_time_s else 0.0
    run_mfu = mfu(tokens_per_s, config, env.device_name, env.world)
    log.line(
        f"throughput tokens_per_s:{tokens_per_s:.0f} "
        f"step_avg:{1000 * train_time_s / max(step, 1):.2f}ms "
        f"mfu:{'null' if run_mfu is None else f'{run_mfu:.4f}'} device:{env.device_name}"
    )

    eval_start = time.perf_counter()
    drift = group_drift(groups, initial)
    drift_by_module = module_drift(groups, initial)
    if ema is not None:
        ema.copy_to(gpt)
    prequant = scorer.plain("pre-quantization")
    if env.is_main:
        save_final(out_dir / CHECKPOINT_FILE, gpt.state_dict(), config, run_id)
    # Score the artifact as read back from disk, as the challenge does.
    final = score_roundtrip(scorer, out_dir)
    eval_time_s = time.perf_counter() - eval_start

    code_files = loaded_code_files()
    code_bytes = sum(f.bytes_total for f in code_files)
    model_bytes = final["model_bytes"]
    artifact_bytes = code_bytes + model_bytes
    log.line(f"Serialized model int{config.quant_bits}+zstd: {model_bytes} bytes")
    log.line(f"Code size: {code_bytes} bytes")
    log.line(f"Total submission size int{config.quant_bits}+zstd: {artifact_bytes} bytes")
    for name, value in drift_by_module.items():
        log.line(f"drift:{name} {value:.6g}")
    return {
        **final,
        "prequant_val_loss": prequant.val_loss,
        "prequant_val_bpb": prequant.val_bpb,
        "eval_stride": config.eval_stride,
        "artifact_bytes": artifact_bytes,
        "code_bytes": code_bytes,
        "under_cap": artifact_bytes <= ARTIFACT_CAP_BYTES,
        "code_sha256": code_digest(code_files),
        "code_files": {f.path: {"bytes": f.bytes_total, "sha256": f.sha256} for f in code_files},
        "checkpoint": CHECKPOINT_FILE,
        "steps": step,
        "train_time_s": train_time_s,
        "eval_time_s": eval_time_s,
        "tokens_per_s": tokens_per_s,
        "mfu": run_mfu,
        "flops_per_token": flops_per_token(config),
        "micro_steps": batches.micro_steps,
        "compiled": compiled,
        "device_name": env.device_name,
        "jepa_loss": last_jepa,
        "jepa_pred_std": last_std,
        "group_drift": drift,
        "module_drift": drift_by_module,
        "grad_health": grad_health.summary(),
        "jepa_std_target": config.jepa_std_target if config.jepa_weight > 0 else None,
        "data": data_provenance(config.data_dir, config.tokenizer_path),
        **runtime_provenance(env.device, env.world),
        "n_params": count_params(gpt),
    }


def mean_over_ranks(tensors: dict[str, torch.Tensor], env: Dist) -> dict[str, float]:
    """Average scalar tensors over ranks (a host sync: call on log steps only)."""
    stacked = torch.stack([t.detach().float() for t in tensors.values()])
    if env.world > 1:
        dist.all_reduce(stacked)
        stacked /= env.world
    return dict(zip(tensors, stacked.tolist(), strict=True))


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
        result |= train(config, env, log, args.out, result["run_id"])
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
