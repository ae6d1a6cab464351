"""A stand-in for a challenge `train_gpt.py`: no training, the challenge's log lines.

Read like a challenge script reads its settings (upper-case environment variables, parsed
at start-up), it prints on rank 0 the lines a real script prints: settings, step lines,
`stopping_early`, size lines and the final int8+zlib round-trip metric. Its numbers are a
pure function of the settings, so a test knows them in advance:

    val_bpb  = 1.2 + SEED / 1e4 - JEPA_LOSS_WEIGHT / 10   (printed to 8 decimals)
    val_loss = val_bpb * 1.69
    model bytes = 15_000_000 + ITERATIONS; code bytes = this file's size

`FAKE_CRASH=1` stops it after training with a traceback and exit status 1, the way an
out-of-memory export ends. It writes `final_model.int8.ptz` into its working directory.
"""

import os
import sys
import time

SEED = int(os.environ.get("SEED", 1337))
ITERATIONS = int(os.environ.get("ITERATIONS", 20))
JEPA_LOSS_WEIGHT = float(os.environ.get("JEPA_LOSS_WEIGHT", 0.0))
MAX_WALLCLOCK_SECONDS = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))
EMA_ENABLED = bool(int(os.environ.get("EMA_ENABLED", "0")))
FAKE_CRASH = bool(int(os.environ.get("FAKE_CRASH", "0")))
RUN_ID = os.environ.get("RUN_ID", "local")
RANK = int(os.environ.get("RANK", "0"))
WORLD_SIZE = int(os.environ.get("WORLD_SIZE", "1"))


def log0(line: str) -> None:
    if RANK == 0:
        print(line, flush=True)


def main() -> None:
    code_bytes = os.path.getsize(__file__)
    log0(f"logs/{RUN_ID}.txt")
    log0("model_params:17059912")
    log0(f"world_size:{WORLD_SIZE} grad_accum_steps:1")
    log0(
        f"train_batch_tokens:524288 train_seq_len:1024 iterations:{ITERATIONS} "
        f"warmup_steps:20 max_wallclock_seconds:{MAX_WALLCLOCK_SECONDS:.3f}"
    )
    log0(f"jepa_loss_weight:{JEPA_LOSS_WEIGHT} ema_enabled:{EMA_ENABLED}")
    log0(f"seed:{SEED}")
    for step in range(1, ITERATIONS + 1):
        log0(
            f"step:{step}/{ITERATIONS} train_loss:{4.0 - step / 100:.4f} "
            f"train_time:{step * 40}ms step_avg:40.00ms"
        )
    val_bpb = 1.2 + SEED / 1e4 - JEPA_LOSS_WEIGHT / 10
    val_loss = val_bpb * 1.69
    log0(
        f"step:{ITERATIONS}/{ITERATIONS} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
        f"train_time:{ITERATIONS * 40}ms step_avg:40.00ms"
    )
    log0("peak memory allocated: 10184 MiB reserved: 10200 MiB")
    if FAKE_CRASH:
        log0("Traceback (most recent call last):")
        log0('  File "train_gpt.py", line 1, in <module>')
        log0("torch.OutOfMemoryError: CUDA out of memory during export")
        sys.exit(1)
    model_bytes = 15_000_000 + ITERATIONS
    with open("final_model.int8.ptz", "wb") as f:
        f.write(b"\0" * 16)
    log0("Serialized model: 67224983 bytes")
    log0(f"Code size: {code_bytes} bytes")
    log0(f"Total submission size: {67224983 + code_bytes} bytes")
    log0(f"Serialized model int8+zlib: {model_bytes} bytes")
    log0(f"Total submission size int8+zlib: {model_bytes + code_bytes} bytes")
    time.sleep(0.01)
    log0(f"final_int8_zlib_roundtrip val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:11ms")
    log0(f"final_int8_zlib_roundtrip_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")


if __name__ == "__main__":
    main()
