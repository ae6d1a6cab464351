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
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from jepardy.errors import UserError
from jepardy.trainer.build import build_objective, byte_tables, uses_compile, wrap_model
from jepardy.trainer.checkpoint import CHECKPOINT_FILE, save_final
from jepardy.trainer.config import ARTIFACT_CAP_BYTES, TrainConfig, config_from_params
from jepardy.trainer.data import TrainBatches, load_val_tokens
from jepardy.trainer.distributed import (
    BudgetFlag,
    Dist,
    init_distributed,
    mean_over_ranks,
    synchronize,
)
from jepardy.trainer.eval import ByteCounter, Forward
from jepardy.trainer.export import CodeFile, code_digest, loaded_code_files
from jepardy.trainer.health import GradHealth, group_drift, module_drift
from jepardy.trainer.jepa import TrainingObjective
from jepardy.trainer.model import GPT, count_params
from jepardy.trainer.optim import (
    Optimizers,
    ParamGroup,
    WeightEMA,
    assign_groups,
    build_optimizer,
    group_rules,
    group_table,
    lr_multiplier,
    muon_momentum,
    set_lr,
    set_muon_momentum,
)
from jepardy.trainer.provenance import data_provenance, runtime_provenance
from jepardy.trainer.runlog import RunLog, write_result
from jepardy.trainer.scoring import Scorer, model_budget_bytes, score_roundtrip
from jepardy.trainer.step import StepStats, train_step
from jepardy.trainer.throughput import flops_per_token, mfu

# Re-exported: tests, benchmarks and export_run import these from here.
__all__ = [
    "Dist",
    "RunLog",
    "StepStats",
    "build_objective",
    "byte_tables",
    "init_distributed",
    "main",
    "train",
    "train_step",
    "uses_compile",
    "wrap_model",
    "write_result",
]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


# --- 1. setup ---------------------------------------------------------------------------


@dataclass
class Run:
    """Everything `setup` builds for one training run."""

    config: TrainConfig
    env: Dist
    log: RunLog
    objective: TrainingObjective  # the raw module: groups, EMA, checkpoints, export
    model: nn.Module  # what forward/backward go through (compiled, DDP)
    groups: list[ParamGroup]
    optimizer: Optimizers
    batches: TrainBatches
    scorer: Scorer
    initial: dict[str, list[Tensor]]  # each group's weights at init, for the drift audit
    compiled: bool

    @property
    def gpt(self) -> GPT:
        return self.objective.gpt

    def new_batches(self) -> TrainBatches:
        c = self.config
        return TrainBatches(
            c.data_dir, c.train_batch_tokens, c.seq_len, self.env, c.micro_batch_tokens
        )


def setup(config: TrainConfig, env: Dist, log: RunLog) -> Run:
    """Seed, data, model, optimizer groups (audited), wrapped model and scorer."""
    torch.manual_seed(config.seed)
    objective = build_objective(config, env.device)
    groups = assign_groups(objective, group_rules(config))
    compiled = uses_compile(config, env.device)
    # Evaluation runs the GPT alone (no predictor); compiled too when training is.
    forward: Forward = torch.compile(objective.gpt, dynamic=False) if compiled else objective.gpt
    val_tokens = load_val_tokens(config.data_dir, config.seq_len, config.val_max_tokens)
    counter = ByteCounter(byte_tables(config), env.device)
    run = Run(
        config=config,
        env=env,
        log=log,
        objective=objective,
        model=wrap_model(objective, config, env),
        groups=groups,
        optimizer=build_optimizer(groups, config, env),
        batches=TrainBatches(
            config.data_dir,
            config.train_batch_tokens,
            config.seq_len,
            env,
            config.micro_batch_tokens,
        ),
        scorer=Scorer(objective.gpt, forward, val_tokens, counter, config, env, log.line),
        initial={g.name: [p.detach().float().clone() for p in g.params] for g in groups},
        compiled=compiled,
    )
    log_setup(run)
    return run


def log_setup(run: Run) -> None:
    config, env, log = run.config, run.env, run.log
    log.line(f"model_params:{count_params(run.gpt)} world_size:{env.world} device:{env.device}")
    log.line(
        f"micro_steps:{run.batches.micro_steps} micro_batch_tokens:{run.batches.micro} "
        f"train_batch_tokens:{config.train_batch_tokens} seq_len:{config.seq_len}"
    )
    # What `jepardy ingest` needs of a log to place the run: its seed and budget.
    log.line(
        f"seed:{config.seed} iterations:{config.iterations} "
        f"wallclock_s:{config.wallclock_s:g} vocab_size:{config.vocab_size}"
    )
    if env.device.type == "cuda":
        log.line(f"compile:{'on' if run.compiled else 'off'} autocast:bf16")
    else:
        log.line("compile:off autocast:off (torch.compile and bf16 are for CUDA; this is a CPU)")
    for line in group_table(run.groups):
        log.line(line)


# --- 2. compile warm-up -----------------------------------------------------------------


def warm_up(run: Run) -> None:
    """Compile and warm the kernels outside the clock, then undo every effect: weights,
    optimizer state and the data stream are restored (the challenge's WARMUP_STEPS)."""
    steps = run.config.compile_warmup_steps
    if steps <= 0:
        return
    start = time.perf_counter()
    model_state = {k: v.detach().clone() for k, v in run.objective.state_dict().items()}
    optimizer_state = run.optimizer.state_dict()
    for _ in range(steps):
        train_step(
            run.model,
            run.batches.next_step(),
            run.optimizer,
            run.groups,
            run.config,
            run.env.device,
        )
    run.objective.load_state_dict(model_state)
    run.optimizer.load_state_dict(optimizer_state)
    run.batches = run.new_batches()
    synchronize(run.env.device)
    run.log.line(
        f"compile_warmup_steps:{steps} "
        f"time:{time.perf_counter() - start:.1f}s (undone; not on the clock)"
    )


# --- 3. the step loop -------------------------------------------------------------------


@dataclass
class Progress:
    """Where the loop is; what the finish needs from it."""

    nonfinite: Tensor  # bool on the device: some step's loss was not finite (read on log steps)
    step: int = 0
    train_time_s: float = 0.0  # training only: paused around periodic evaluations
    grad_health: GradHealth = field(default_factory=GradHealth)
    last_jepa: float | None = None
    last_jepa_pred_std: float | None = None

    def check_finite(self) -> None:
        """A host sync: call on log steps and at the end only."""
        if bool(self.nonfinite):
            raise NonFiniteLoss(f"non-finite loss by step {self.step}")


def train_loop(run: Run, ema: WeightEMA | None) -> Progress:
    """Steps until `iterations` or the wallclock budget, whichever comes first.

    The clock counts training only: it is paused around the periodic evaluations. It is the
    host's, which runs ahead of the GPU by at most a step or so; the GPU is waited for
    (synchronize) only where the clock starts and stops.
    """
    config, env = run.config, run.env
    budget = BudgetFlag(env)
    progress = Progress(nonfinite=torch.zeros((), dtype=torch.bool, device=env.device))
    synchronize(env.device)
    segment_start = time.perf_counter()
    while progress.step < config.iterations:
        elapsed = progress.train_time_s + time.perf_counter() - segment_start
        if config.wallclock_s > 0 and budget.spent(elapsed, config.wallclock_s):
            run.log.line(
                f"stopping_early: wallclock_cap train_time:{elapsed * 1000:.0f}ms "
                f"step:{progress.step}/{config.iterations}"
            )
            break
        stats = one_step(run, ema, progress.step, elapsed)
        progress.nonfinite |= ~torch.isfinite(stats.total)
        progress.step += 1
        step = progress.step
        if step % config.log_every == 0 or step == config.iterations:
            now = progress.train_time_s + time.perf_counter() - segment_start
            log_step_metrics(run, progress, stats, elapsed, now)
        if config.val_every and step % config.val_every == 0:
            synchronize(env.device)
            progress.train_time_s += time.perf_counter() - segment_start
            r = run.scorer.plain(f"step:{step}")
            run.log.metrics(step, {"val_loss": r.val_loss, "val_bpb": r.val_bpb})
            segment_start = time.perf_counter()
    synchronize(env.device)
    progress.train_time_s += time.perf_counter() - segment_start
    progress.check_finite()
    return progress


def one_step(run: Run, ema: WeightEMA | None, step: int, elapsed_s: float) -> StepStats:
    """Schedules, the optimizer step, then the EMA copies (target encoder, weight EMA)."""
    config = run.config
    set_lr(run.optimizer, lr_multiplier(step, elapsed_s, config))
    set_muon_momentum(run.optimizer, muon_momentum(step, config))
    log_step = (step + 1) % config.log_every == 0 or step + 1 == config.iterations
    stats = train_step(
        run.model,
        run.batches.next_step(),
        run.optimizer,
        run.groups,
        config,
        run.env.device,
        log_step,
    )
    if run.objective.target_encoder is not None:
        run.objective.target_encoder.update(run.gpt.embed.weight)
    if ema is not None:
        ema.update(run.gpt)
    return stats


# --- 4. log-step metrics ----------------------------------------------------------------


def log_step_metrics(
    run: Run, progress: Progress, stats: StepStats, elapsed_s: float, now_s: float
) -> None:
    """The log step's figures (a host sync: log steps only) to train.log and metrics.jsonl.

    `elapsed_s` is the clock the step's schedules saw; `now_s` the clock after it."""
    config, env, step = run.config, run.env, progress.step
    progress.check_finite()
    tracked = {"train_loss": stats.cross_entropy}
    if stats.jepa is not None and stats.jepa_pred_std is not None:
        tracked |= {"jepa_loss": stats.jepa, "jepa_pred_std": stats.jepa_pred_std}
    values = mean_over_ranks(tracked, env)
    values |= {f"grad_norm_{k}": float(v) for k, v in stats.grad_norms.items()}
    values |= {f"grad_norm_{k}": float(v) for k, v in stats.group_grad_norms.items()}
    values["clip_coef"] = progress.grad_health.observe(values["grad_norm_model"], config.grad_clip)
    values["lr_mult"] = lr_multiplier(step - 1, elapsed_s, config)
    values["tokens_per_s"] = step * config.train_batch_tokens / now_s
    # The training clock (evaluations excluded), named as the challenge's logs name it, so
    # reports draw curves over wall time for script and jepardy runs alike.
    values["train_time_ms"] = now_s * 1000
    step_mfu = mfu(values["tokens_per_s"], config, env.device_name, env.world)
    if step_mfu is not None:
        values["mfu"] = step_mfu
    progress.last_jepa = values.get("jepa_loss")
    progress.last_jepa_pred_std = values.get("jepa_pred_std")
    run.log.metrics(step, values)


# --- 5. finish: EMA weights, checkpoint, artifact, score, result ------------------------


def finish(
    run: Run, progress: Progress, ema: WeightEMA | None, out_dir: Path, run_id: str
) -> dict[str, Any]:
    """Apply the weight EMA, save final.pt, export and score the artifact read back from
    disk, as the challenge does; the result fields (status excluded)."""
    config, env, log, gpt = run.config, run.env, run.log, run.gpt
    step, train_time_s = progress.step, progress.train_time_s
    tokens_per_s = step * config.train_batch_tokens / train_time_s if train_time_s else 0.0
    run_mfu = mfu(tokens_per_s, config, env.device_name, env.world)
    log.line(
        f"throughput tokens_per_s:{tokens_per_s:.0f} "
        f"step_avg:{1000 * train_time_s / max(step, 1):.2f}ms "
        f"mfu:{'null' if run_mfu is None else f'{run_mfu:.4f}'} device:{env.device_name}"
    )
    eval_start = time.perf_counter()
    drift = group_drift(run.groups, run.initial)
    drift_by_module = module_drift(run.groups, run.initial)
    if ema is not None:
        ema.copy_to(gpt)
    prequant = run.scorer.plain("pre-quantization")
    if env.is_main:
        save_final(out_dir / CHECKPOINT_FILE, gpt.state_dict(), config, run_id)
    code_files = loaded_code_files()
    budget = model_budget_bytes(config, sum(f.bytes_total for f in code_files))
    final = score_roundtrip(run.scorer, out_dir, budget)
    eval_time_s = time.perf_counter() - eval_start
    for name, value in drift_by_module.items():
        log.line(f"drift:{name} {value:.6g}")
    return {
        **final,
        **artifact_fields(config, code_files, final["model_bytes"], log),
        "prequant_val_loss": prequant.val_loss,
        "prequant_val_bpb": prequant.val_bpb,
        "eval_stride": config.eval_stride,
        "checkpoint": CHECKPOINT_FILE,
        "steps": step,
        "train_time_s": train_time_s,
        "eval_time_s": eval_time_s,
        "tokens_per_s": tokens_per_s,
        "mfu": run_mfu,
        "flops_per_token": flops_per_token(config),
        "micro_steps": run.batches.micro_steps,
        "compiled": run.compiled,
        "device_name": env.device_name,
        "jepa_loss": progress.last_jepa,
        "jepa_pred_std": progress.last_jepa_pred_std,
        "group_drift": drift,
        "module_drift": drift_by_module,
        "grad_health": progress.grad_health.summary(),
        "jepa_std_target": config.jepa_std_target if config.jepa_weight > 0 else None,
        "data": data_provenance(config.data_dir, config.tokenizer_path),
        **runtime_provenance(env.device, env.world),
        "n_params": count_params(gpt),
    }


def artifact_fields(
    config: TrainConfig, code_files: list[CodeFile], model_bytes: int, log: RunLog
) -> dict[str, Any]:
    """The artifact's size: the exact code that ran plus the model bytes, against the cap."""
    code_bytes = sum(f.bytes_total for f in code_files)
    artifact_bytes = code_bytes + model_bytes
    log.line(f"Serialized model int{config.quant_bits}+zstd: {model_bytes} bytes")
    log.line(f"Code size: {code_bytes} bytes")
    log.line(f"Total submission size int{config.quant_bits}+zstd: {artifact_bytes} bytes")
    return {
        "artifact_bytes": artifact_bytes,
        "code_bytes": code_bytes,
        "under_cap": artifact_bytes <= ARTIFACT_CAP_BYTES,
        "code_sha256": code_digest(code_files),
        "code_files": {f.path: {"bytes": f.bytes_total, "sha256": f.sha256} for f in code_files},
    }


def train(
    config: TrainConfig, env: Dist, log: RunLog, out_dir: Path, run_id: str = ""
) -> dict[str, Any]:
    """Train, save final.pt, export to `out_dir`, score; the result fields (status excluded)."""
    run = setup(config, env, log)
    warm_up(run)
    # The weight EMA starts from the weights the warm-up restored.
    ema = WeightEMA(run.gpt, config.ema_decay) if config.ema else None
    progress = train_loop(run, ema)
    return finish(run, progress, ema, out_dir, run_id)


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
