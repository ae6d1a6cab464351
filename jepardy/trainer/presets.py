"""Presets: named sets of TrainConfig defaults that a spec selects with `preset = "..."`.

A preset is a plain dict of field overrides. `config_from_params` applies it first and the
explicit params after it, so any field of a preset can be overridden. No torch here.

Sources (openai/parameter-golf, read for figures only):
- [NB] records/track_10min_16mb/2026-03-17_NaiveBaseline: its train_gpt.py `Hyperparameters`
  defaults, its README ("Configuration", "Key metrics") and its model code.
- [LS] records/track_10min_16mb/2026-03-23_LeakyReLU_LegalTTT_ParallelMuon: its train_gpt.py
  defaults, the README's run command (which overrides some defaults) and its model code.
- [study] the JEPA study's plan, stated where it is used (its notes are not shipped).
"""

from __future__ import annotations

from typing import Any

# The challenge's naive baseline (val_bpb 1.2244).
NAIVE_BASELINE: dict[str, Any] = {
    # [NB] README "Layout": VOCAB_SIZE=1024 NUM_LAYERS=9 MODEL_DIM=512 NUM_HEADS=8
    # NUM_KV_HEADS=4 MLP_MULT=2, tied embeddings; ROPE_BASE 10000, LOGIT_SOFTCAP 30.
    "vocab_size": 1024,
    "n_layers": 9,
    "d_model": 512,
    "n_heads": 8,
    "n_kv_heads": 4,
    "mlp_mult": 2,
    "rope_base": 10000.0,
    "logit_softcap": 30.0,
    # [NB] model code: relu^2 MLP; the token embedding is RMS-normed before the first block;
    # each block mixes its input with that first input (resid_mix); the second half of the
    # blocks adds weighted outputs of the first half (skip_weights); per-head query gain
    # QK_GAIN_INIT=1.5; q/k/v/fc keep torch's nn.Linear init, output layers start at zero;
    # TIED_EMBED_INIT_STD=0.005.
    "mlp_activation": "relu2",
    "embed_norm": True,
    "resid_mix": True,
    "unet_skips": True,
    "qk_gain": 1.5,
    "matrix_init": "uniform",
    "embed_init_std": 0.005,
    # [NB] TRAIN_BATCH_TOKENS=524288, TRAIN_SEQ_LEN=1024, VAL_BATCH_SIZE=524288.
    "seq_len": 1024,
    "train_batch_tokens": 524_288,
    "val_batch_tokens": 524_288,
    # [NB] Muon on block matrices (MATRIX_LR 0.04, MUON_MOMENTUM 0.95 warmed up from 0.85
    # over 500 steps, MUON_BACKEND_STEPS 5); Adam on the tied embedding (TIED_EMBED_LR 0.05)
    # and on vectors and gates (SCALAR_LR 0.04); BETA1 0.9, BETA2 0.95; no weight decay;
    # GRAD_CLIP_NORM 0 (off).
    "optimizer": "muon",
    "lr": 0.04,
    "embed_lr": 0.05,
    "scalar_lr": 0.04,
    "muon_momentum": 0.95,
    "muon_momentum_warmup_start": 0.85,
    "muon_momentum_warmup_steps": 500,
    "muon_ns_steps": 5,
    "beta1": 0.9,
    "beta2": 0.95,
    "weight_decay": 0.0,
    "adam_weight_decay": 0.0,
    "grad_clip": 0.0,
    # [NB] ITERATIONS 20000 under MAX_WALLCLOCK_SECONDS 600. Its WARMUP_STEPS=20 are not a
    # learning-rate warmup: they prime the compiled step and are then undone, so the lr starts
    # at full value. WARMDOWN_ITERS=1200 decays the lr linearly to 0 over the last 1200 steps'
    # worth of wallclock: 1200 of the 13,780 steps the record reached in 600 s = 0.087.
    "iterations": 20_000,
    "wallclock_s": 600.0,
    "warmup_steps": 0,
    "compile_warmup_steps": 20,
    "warmdown_frac": 0.087,
    # [NB] TRAIN_LOG_EVERY 200; export int8 per-row (+ zlib there; jepardy compresses with zstd).
    "log_every": 200,
    "quant_bits": 8,
}

# The study's leader stack: the 2026-03-23 record (val_bpb 1.1194 with test-time training,
# 1.1218 without), test-time training off as in the study's leader-stack lane.
LEADER_STACK: dict[str, Any] = {
    # [LS] NUM_LAYERS 11, MODEL_DIM 512, NUM_HEADS 8, NUM_KV_HEADS 4, MLP_MULT 3 with
    # LeakyReLU(0.5)^2, VOCAB_SIZE 1024, tied embeddings, LOGIT_SOFTCAP 30.
    "vocab_size": 1024,
    "n_layers": 11,
    "d_model": 512,
    "n_heads": 8,
    "n_kv_heads": 4,
    "mlp_mult": 3,
    "mlp_activation": "leaky_relu2",
    "logit_softcap": 30.0,
    # [LS] ROPE_DIMS 16 (of head_dim 64), ROPE_BASE 10000. Its Rotary is built for a
    # 1024-token context and rescales its base for longer sequences (10000 * 2^(16/14), about
    # 22,082, at 2048); rope_train_seq_len does the same from the actual seq_len, so a spec
    # that sets seq_len = 1024 trains with base 10000, as the record would.
    "rope_dims": 16,
    "rope_base": 10000.0,
    "rope_train_seq_len": 1024,
    # [LS] model code: RMS-normed input embedding, resid_mix, U-Net skip_weights, QK_GAIN_INIT
    # 1.5, LN_SCALE (branch inputs scaled by 1/sqrt(layer + 1)), SmearGate, BigramHash
    # (BIGRAM_VOCAB_SIZE 1536 in the run command, BIGRAM_DIM 128), XSA_LAST_N 4, value
    # embeddings (VE_DIM 128 on VE_LAYERS 9,10 = the last 2 of 11); orthogonal init of
    # q/k/v/fc, output layers zero; TIED_EMBED_INIT_STD 0.005.
    "embed_norm": True,
    "resid_mix": True,
    "unet_skips": True,
    "qk_gain": 1.5,
    "ln_scale": True,
    "smear_gate": True,
    "bigram_hash_buckets": 1536,
    "bigram_dim": 128,
    "xsa_last_n": 4,
    "value_embed_last_n": 2,
    "value_embed_dim": 128,
    "matrix_init": "orthogonal",
    "embed_init_std": 0.005,
    # [LS] TRAIN_SEQ_LEN 2048, TRAIN_BATCH_TOKENS 786432, VAL_BATCH_SIZE 524288.
    "seq_len": 2048,
    "train_batch_tokens": 786_432,
    "val_batch_tokens": 524_288,
    # [LS] run command: MATRIX_LR 0.025 (Muon), TIED_EMBED_LR 0.035 and SCALAR_LR 0.025
    # (Adam; the bigram and value-embedding tables get the embedding lr), MUON_WD 0.04 and
    # ADAM_WD 0.04 (decoupled), MUON_MOMENTUM 0.99 warmed up from 0.92 over 1500 steps,
    # MUON_BACKEND_STEPS 5, BETA1 0.9, BETA2 0.95, GRAD_CLIP_NORM 0.3.
    "optimizer": "muon",
    "lr": 0.025,
    "embed_lr": 0.035,
    "scalar_lr": 0.025,
    "weight_decay": 0.04,
    "adam_weight_decay": 0.04,
    "muon_momentum": 0.99,
    "muon_momentum_warmup_start": 0.92,
    "muon_momentum_warmup_steps": 1500,
    "muon_ns_steps": 5,
    "beta1": 0.9,
    "beta2": 0.95,
    "grad_clip": 0.3,
    # [LS] weight EMA 0.997, applied before export and evaluation.
    "ema": True,
    "ema_decay": 0.997,
    # [LS] ITERATIONS 9000 under MAX_WALLCLOCK_SECONDS 600 (the records stopped at ~7,185
    # steps, 83.4 ms/step); WARMUP_STEPS 20 prime the compiled step and are undone (no lr
    # warmup); WARMDOWN_ITERS 3500 of ~7,185 steps = 0.49 of the wallclock budget.
    "iterations": 9000,
    "wallclock_s": 600.0,
    "warmup_steps": 0,
    "compile_warmup_steps": 20,
    "warmdown_frac": 0.49,
    # [LS] EVAL_STRIDE 64 sliding-window evaluation; int6 export (lzma there; zstd here);
    # TRAIN_LOG_EVERY 500.
    "eval_stride": 64,
    "quant_bits": 6,
    "log_every": 500,
}

# The study's isolation lane [study, method 1 and 3]: the challenge's 9x512 baseline on
# byte-level data (vocab 260: 4 specials + 256 bytes), 1 GPU, 180 s, 131,072 tokens per step
# at seq len 1024, with the EMA target encoder (decay 0.995) when JEPA is on.
ISOLATION_BYTE: dict[str, Any] = {
    **NAIVE_BASELINE,
    "vocab_size": 260,
    "tokenizer_path": "",  # byte-level accounting: specials count 0 bytes, each byte 1
    "seq_len": 1024,
    "train_batch_tokens": 131_072,
    "val_batch_tokens": 131_072,
    "wallclock_s": 180.0,
    # The baseline's WARMDOWN_ITERS=1200 as a fraction of this budget: at the baseline's
    # ~1.5 M tokens/s per H100 ([NB]: 524,288 tokens per 43.5 ms on 8 GPUs), 131,072-token
    # steps take ~87 ms, ~2,070 of them in 180 s; 1200 / 2070 = 0.58. An estimate.
    "warmdown_frac": 0.58,
    "log_every": 100,
    "jepa_target": "ema",
    "jepa_target_ema_decay": 0.995,
}

PRESETS: dict[str, dict[str, Any]] = {
    "naive_baseline": NAIVE_BASELINE,
    "leader_stack": LEADER_STACK,
    "isolation_byte": ISOLATION_BYTE,
}


def reduced(name: str) -> dict[str, Any]:
    """Preset `name` at toy size, for CPU tests and benchmarks: every feature and optimizer
    choice of the preset kept, every size shrunk (4 layers of width 64, seq len 64, a
    1,024-token batch, a few steps). Data paths are left to the caller."""
    preset = PRESETS[name]
    small: dict[str, Any] = {
        "n_layers": 4,
        "d_model": 64,
        "n_heads": 4,
        "n_kv_heads": 2,
        "seq_len": 64,
        "train_batch_tokens": 1024,
        "val_batch_tokens": 4096,
        "val_max_tokens": 4096,
        "iterations": 6,
        "wallclock_s": 0.0,
        "compile_warmup_steps": min(preset.get("compile_warmup_steps", 0), 2),
        "log_every": 3,
        "zstd_level": 3,
    }
    if preset.get("rope_dims"):
        small["rope_dims"] = 8  # of head_dim 16: still partial
    if preset.get("bigram_hash_buckets"):
        small |= {"bigram_hash_buckets": 64, "bigram_dim": 16}
    if preset.get("value_embed_last_n"):
        small |= {"value_embed_last_n": 1, "value_embed_dim": 16}
    if preset.get("xsa_last_n"):
        small["xsa_last_n"] = 2
    if preset.get("eval_stride"):
        small["eval_stride"] = 16
    return {"preset": name, **small}
