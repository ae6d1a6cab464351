"""Trainer throughput: tokens/s and MFU of a preset's training step, and against a challenge
script on the same device with the same shapes, in the same run.

    python bench/trainer_throughput.py --preset leader_stack [--steps 20] [--warmup 10]
        [--device auto|cpu|cuda] [--micro-steps 8] [--set FIELD=VALUE ...] [--tiny]
        [--reference path/to/train_gpt.py] [--tokenizer path/to/1024.model]

Ours: the trainer's own step (train.py `train_step`: compile, bf16, DDP-free on one device)
on synthetic tokens, `--warmup` steps first (compile), then `--steps` timed steps between two
device synchronisations. MFU as `jepardy.trainer.throughput` defines it (null on a CPU).

Theirs (`--reference`): the challenge script under torchrun on this one device, with the
preset's shapes as its environment variables (NUM_LAYERS, MODEL_DIM, ...), the same
synthetic shards, ITERATIONS = --steps, WARMUP_STEPS = --warmup (its compile priming), and
its own step_avg / train_time read from its log. The challenge's scripts accumulate
8 // world_size micro-steps, so ours runs `--micro-steps 8` by default: the same per-device
micro-batch. Challenge scripts need CUDA (and the records' need their own kernels, e.g.
flash_attn_3), so `--reference` is refused on a CPU.

`--tiny` shrinks the preset to toy size (presets.reduced) for a CPU smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARD_TOKENS = 1 << 22  # one synthetic train shard; the stream wraps around it
STEP_LINE = re.compile(r"step:(\d+)/\d+ .*?train_time:(\d+)ms step_avg:([\d.]+)ms")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="leader_stack")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (compile)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--micro-steps", type=int, default=8, help="gradient accumulation (the challenge's 8)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--tiny", action="store_true", help="the preset at toy size (CPU)")
    parser.add_argument("--reference", type=Path, help="a challenge train_gpt.py to compare")
    parser.add_argument("--tokenizer", type=Path, help="SentencePiece model for --reference")
    return parser.parse_args(argv)


def parse_sets(items: list[str]) -> dict[str, Any]:
    """FIELD=VALUE pairs; values parsed as JSON when they can be (numbers, true/false)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            fail(f"--set {item!r}: expected FIELD=VALUE")
        try:
            out[name] = json.loads(text)
        except json.JSONDecodeError:
            out[name] = text
    return out


def synthetic_data(root: Path, vocab_size: int, val_tokens: int) -> Path:
    """Train and val shards of uniformly random tokens (throughput does not read them)."""
    from jepardy.data.shards import write_shard

    rng = np.random.default_rng(0)
    data = root / "datasets" / "synthetic"
    write_shard(data / "fineweb_train_000000.bin", rng.integers(0, vocab_size, SHARD_TOKENS))
    write_shard(data / "fineweb_val_000000.bin", rng.integers(0, vocab_size, val_tokens))
    return data


def measure_ours(config: Any, steps: int, warmup: int) -> dict[str, Any]:
    import torch

    from jepardy.trainer.data import TrainBatches
    from jepardy.trainer.distributed import Dist, synchronize
    from jepardy.trainer.optim import (
        WeightEMA,
        assign_groups,
        build_optimizer,
        group_rules,
        muon_momentum,
        set_lr,
        set_muon_momentum,
    )
    from jepardy.trainer.step import train_step
    from jepardy.trainer.throughput import mfu
    from jepardy.trainer.train import build_objective, uses_compile, wrap_model

    env = Dist(0, 1, torch.device("cuda" if config.device == "cuda" else "cpu"))
    if env.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_math_sdp(False)
    torch.manual_seed(config.seed)
    objective = build_objective(config, env.device)
    groups = assign_groups(objective, group_rules(config))
    optimizer = build_optimizer(groups, config, env)
    model = wrap_model(objective, config, env)
    batches = TrainBatches(
        config.data_dir,
        config.train_batch_tokens,
        config.seq_len,
        env,
        config.micro_batch_tokens,
    )
    ema = WeightEMA(objective.gpt, config.ema_decay) if config.ema else None

    def one(step: int) -> None:
        set_lr(optimizer, 1.0)
        set_muon_momentum(optimizer, muon_momentum(step, config))
        train_step(model, batches.next_step(), optimizer, groups, config, env.device)
        if objective.target_encoder is not None:
            objective.target_encoder.update(objective.gpt.embed.weight)
        if ema is not None:
            ema.update(objective.gpt)

    compile_start = time.perf_counter()
    for step in range(warmup):
        one(step)
    synchronize(env.device)
    start = time.perf_counter()
    for step in range(steps):
        one(warmup + step)
    synchronize(env.device)
    seconds = time.perf_counter() - start
    tokens_per_s = steps * config.train_batch_tokens / seconds
    return {
        "device": env.device_name,
        "compiled": uses_compile(config, env.device),
        "micro_steps": batches.micro_steps,
        "warmup_s": start - compile_start,
        "step_avg_ms": 1000 * seconds / steps,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu(tokens_per_s, config, env.device_name, 1),
    }


def reference_env(config: Any, data: Path, tokenizer: Path, steps: int, warmup: int) -> dict:
    """The challenge's environment variables for the same shapes (names from its scripts'
    Hyperparameters; a script ignores the ones it does not read)."""
    ve_layers = ",".join(
        str(i) for i in range(config.n_layers - config.value_embed_last_n, config.n_layers)
    )
    values = {
        "DATA_PATH": data,
        "TOKENIZER_PATH": tokenizer,
        "RUN_ID": "bench",
        "SEED": config.seed,
        "VOCAB_SIZE": config.vocab_size,
        "NUM_LAYERS": config.n_layers,
        "MODEL_DIM": config.d_model,
        "NUM_HEADS": config.n_heads,
        "NUM_KV_HEADS": config.n_kv_heads,
        "MLP_MULT": config.mlp_mult,
        "TRAIN_SEQ_LEN": config.seq_len,
        "EVAL_SEQ_LEN": config.seq_len,
        "TRAIN_BATCH_TOKENS": config.train_batch_tokens,
        "VAL_BATCH_SIZE": 8 * config.seq_len,
        "ITERATIONS": steps,
        "WARMUP_STEPS": warmup,
        "MAX_WALLCLOCK_SECONDS": 0,
        "VAL_LOSS_EVERY": 0,
        "TRAIN_LOG_EVERY": steps,
        "WARMDOWN_ITERS": 0,  # no lr decay, so no late QAT or SWA switching on mid-bench
        "LATE_QAT_THRESHOLD": 0,
        "SWA_ENABLED": 0,
        "TTT_ENABLED": 0,
        "EVAL_STRIDE": 0,
        "ROPE_DIMS": config.rope_dims,
        "LN_SCALE": int(config.ln_scale),
        "BIGRAM_VOCAB_SIZE": config.bigram_hash_buckets,
        "BIGRAM_DIM": config.bigram_dim,
        "XSA_LAST_N": config.xsa_last_n,
        "VE_ENABLED": int(config.value_embed_last_n > 0),
        "VE_DIM": config.value_embed_dim,
        "VE_LAYERS": ve_layers,
    }
    return {key: str(value) for key, value in values.items()}


def measure_reference(script: Path, env_vars: dict[str, str], batch_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as cwd:  # its logs/ and final_model.* land here
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        proc = subprocess.run(
            [*torchrun, "--nproc_per_node=1", str(script.resolve())],
            cwd=cwd,
            env={**os.environ, **env_vars},
            capture_output=True,
            text=True,
            check=False,
        )
    matches = STEP_LINE.findall(proc.stdout)
    if proc.returncode != 0 or not matches:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        fail(f"--reference {script}: exit code {proc.returncode}: {last}")
    step, train_ms, step_avg_ms = matches[-1]
    seconds = int(train_ms) / 1000
    return {
        "step_avg_ms": float(step_avg_ms),
        "tokens_per_s": int(step) * batch_tokens / seconds,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.reference is not None and not args.reference.is_file():
        fail(f"--reference {args.reference}: no such file")
    import torch

    from jepardy.errors import UserError
    from jepardy.trainer.config import config_from_params
    from jepardy.trainer.presets import PRESETS, reduced
    from jepardy.trainer.throughput import mfu

    if args.preset not in PRESETS:
        fail(f"--preset {args.preset!r}: known: {', '.join(PRESETS)}")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.reference is not None and device != "cuda":
        fail("--reference runs a challenge script, which needs a CUDA device")
    params = reduced(args.preset) if args.tiny else {"preset": args.preset}
    params |= parse_sets(args.set)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            base = config_from_params(params, source="bench")
            micro = base.train_batch_tokens // args.micro_steps
            data = synthetic_data(Path(tmp), base.vocab_size, 8 * base.seq_len + 1)
            config = config_from_params(
                params
                | {
                    "device": device,
                    "data_dir": str(data),
                    "micro_batch_tokens": micro,
                    "compile_warmup_steps": 0,
                },
                source="bench",
            )
        except UserError as err:
            fail(str(err))
        ours = measure_ours(config, args.steps, args.warmup)
        print(
            f"ours: preset={args.preset}{' (tiny)' if args.tiny else ''} device={ours['device']} "
            f"compiled={ours['compiled']} micro_steps={ours['micro_steps']} steps={args.steps} "
            f"warmup_s={ours['warmup_s']:.1f} step_avg_ms={ours['step_avg_ms']:.2f} "
            f"tokens_per_s={ours['tokens_per_s']:.0f} mfu={fmt(ours['mfu'])}"
        )
        if args.reference is None:
            return
        tokenizer = args.tokenizer or default_tokenizer(config.vocab_size)
        env_vars = reference_env(config, data, tokenizer, args.steps, args.warmup)
        theirs = measure_reference(args.reference, env_vars, config.train_batch_tokens)
    their_mfu = mfu(theirs["tokens_per_s"], config, ours["device"], 1)
    print(
        f"theirs: script={args.reference} step_avg_ms={theirs['step_avg_ms']:.2f} "
        f"tokens_per_s={theirs['tokens_per_s']:.0f} mfu={fmt(their_mfu)}"
    )
    print(f"ratio ours/theirs tokens_per_s: {ours['tokens_per_s'] / theirs['tokens_per_s']:.3f}")


def default_tokenizer(vocab_size: int) -> Path:
    """The challenge scripts insist on a SentencePiece model of VOCAB_SIZE pieces: the
    embedded corpus's 1024-piece one (built if missing) unless --tokenizer names one."""
    if vocab_size != 1024:
        fail(f"--reference with vocab_size {vocab_size} needs --tokenizer (a {vocab_size} model)")
    from jepardy.data.corpus import build_embedded

    return build_embedded(Path("data/embedded")).tokenizer_model


def fmt(value: float | None) -> str:
    return "null" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
