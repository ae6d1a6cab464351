"""jepardy's trainer side by side with a challenge script, on CPU, with the same weights.

    python bench/reference.py --reference PATH/train_gpt.py [--preset naive_baseline|leader_stack]
        [--weights RUN_DIR/final.pt] [--batch-seqs 2] [--steps 2] [--zstd-level 19]

It loads the script as a module (its `main()` is not run; flash attention, which needs a GPU,
is stubbed with PyTorch's SDPA), builds its GPT at the preset's shapes, copies jepardy's
weights into it (every tensor of theirs must be filled: `load_state_dict(strict=True)`), and
compares on the same batch of real validation text (the embedded corpus, built on first use).

Weights: `--weights` (a run's final.pt), else the preset's GPT with every matrix drawn at its
initialisation's std, zero-initialised output layers included (as once trained), so no
comparison rides on zeros. Deterministic.

Prints a table, then, as its last line, one JSON object of `[ours, theirs]` pairs: params,
loss (forward, eval mode), jepa_loss (null where the script has none), val_bpb (the same
per-token losses through jepardy's byte counting and the script's lookup tables),
model_bytes (the script's own export of the weights, and ours at a byte budget equal to
theirs), roundtrip_mse (of those exports, over every element), step_ms (CPU forward +
backward at the preset's shapes on `--batch-seqs` sequences).

The challenge's scripts are not part of jepardy: point `--reference` at a copy.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import json
import lzma
import math
import re
import sys
import time
import types
import zlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from jepardy.data.corpus import build_embedded
from jepardy.data.shards import list_shards, read_shard
from jepardy.data.tokenizer import sentencepiece_byte_tables
from jepardy.trainer.budget import fit_export
from jepardy.trainer.config import TrainConfig, config_from_params
from jepardy.trainer.eval import ByteCounter
from jepardy.trainer.train import build_objective


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, type=Path, help="a challenge train_gpt.py")
    parser.add_argument("--preset", default="leader_stack", help="naive_baseline | leader_stack")
    parser.add_argument("--weights", type=Path, help="a run's final.pt (default: synthetic)")
    parser.add_argument("--batch-seqs", type=int, default=2, help="sequences in the batch")
    parser.add_argument("--steps", type=int, default=3, help="timed rounds (fastest kept)")
    parser.add_argument("--zstd-level", type=int, help="our export's level (default: preset's)")
    parser.add_argument("--data", type=Path, default=Path("data/embedded"), help="corpus root")
    return parser.parse_args(argv)


# --- the script as a module ---------------------------------------------------------------


def flash_attn_stub(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, **_: Any) -> Tensor:
    """flash_attn_3's (B, T, H, D) layout through SDPA, for CPU."""
    y = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        is_causal=causal,
        enable_gqa=q.size(2) != k.size(2),
    )
    return y.transpose(1, 2)


def load_script(path: Path) -> types.ModuleType:
    """Import a challenge script without running its main(); GPU-only kernels stubbed."""
    stub = types.ModuleType("flash_attn_interface")
    stub.flash_attn_func = flash_attn_stub  # type: ignore[attr-defined]
    sys.modules.setdefault("flash_attn_interface", stub)
    spec = importlib.util.spec_from_file_location("reference_train_gpt", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def their_model(ref: types.ModuleType, config: TrainConfig) -> torch.nn.Module:
    """The script's GPT at the config's shapes (only the arguments its GPT takes)."""
    n = config.n_layers
    wanted = {
        "vocab_size": config.vocab_size,
        "num_layers": n,
        "model_dim": config.d_model,
        "num_heads": config.n_heads,
        "num_kv_heads": config.n_kv_heads,
        "mlp_mult": config.mlp_mult,
        "tie_embeddings": True,
        "tied_embed_init_std": config.embed_init_std or config.init_std,
        "logit_softcap": config.logit_softcap,
        "rope_base": 10000.0,  # the scripts' ROPE_BASE; their Rotary rescales it past 1024
        "qk_gain_init": config.qk_gain,
        "bigram_vocab_size": config.bigram_hash_buckets,
        "bigram_dim": config.bigram_dim,
        "xsa_last_n": config.xsa_last_n,
        "rope_dims": config.rope_dims,
        "ln_scale": config.ln_scale,
        "ve_enabled": config.value_embed_last_n > 0,
        "ve_dim": config.value_embed_dim,
        "ve_layers": ",".join(str(i) for i in range(n - config.value_embed_last_n, n)),
    }
    accepted = inspect.signature(ref.GPT.__init__).parameters
    model = ref.GPT(**{k: v for k, v in wanted.items() if k in accepted}).float()
    return model


# --- weights --------------------------------------------------------------------------------


def synthetic_weights(objective: torch.nn.Module) -> None:
    """Every matrix at its initialisation's std (1/sqrt of its larger side; embedding tables
    at their own), zero-initialised ones included; vectors and gates left at init."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in objective.named_parameters():
            if p.ndim != 2 or "resid_mix" in name or "skip_weights" in name:
                continue
            if name in ("gpt.embed.weight", "gpt.value_embed.table.weight"):
                std = float(p.std()) or 0.01
            else:
                std = max(p.shape) ** -0.5
            p.copy_(torch.randn(p.shape, generator=g) * std)


def theirs_from_ours(ours: dict[str, Tensor], theirs: dict[str, Tensor], n: int) -> dict:
    """jepardy's TrainingObjective state -> the script's GPT state (banked or not)."""
    out: dict[str, Tensor] = {}
    banked = "qo_bank" in theirs
    ve_layers = sorted(
        int(k.split(".")[2]) for k in ours if k.startswith("gpt.blocks.") and k.endswith("ve_scale")
    )
    names = {
        "gpt.embed.weight": "tok_emb.weight",
        "gpt.skip_weights": "skip_weights",
        "gpt.smear.gate": "smear.gate",
        "gpt.bigram.table.weight": "bigram.embed.weight",
        "gpt.bigram.proj.weight": "bigram.proj.weight",
        "gpt.bigram.scale": "bigram.scale",
        "gpt.value_embed.table.weight": "ve_shared.embed.weight",
        "gpt.value_embed.proj.weight": "ve_shared.proj.weight",
        "gpt.value_embed.scale": "ve_shared.scale",
        "predictor.fc.weight": "blocks.0.jepa_in.weight",
        "predictor.proj.weight": "blocks.0.jepa_out.weight",
    }
    layer_names = {
        "attn.q.weight": "attn.c_q.weight",
        "attn.k.weight": "attn.c_k.weight",
        "attn.v.weight": "attn.c_v.weight",
        "attn.proj.weight": "attn.proj.weight",
        "mlp.fc.weight": "mlp.fc.weight",
        "mlp.proj.weight": "mlp.proj.weight",
    }
    banks = {"qo_bank": [None] * 2 * n, "kv_bank": [None] * 2 * n}
    banks |= {"mlp_up_bank": [None] * n, "mlp_down_bank": [None] * n}
    bank_slot = {
        "attn.q.weight": ("qo_bank", 0),
        "attn.proj.weight": ("qo_bank", n),
        "attn.k.weight": ("kv_bank", 0),
        "attn.v.weight": ("kv_bank", n),
        "mlp.fc.weight": ("mlp_up_bank", 0),
        "mlp.proj.weight": ("mlp_down_bank", 0),
    }
    for key, value in ours.items():
        if key in names:
            out[names[key]] = value
            continue
        m = re.fullmatch(r"gpt\.blocks\.(\d+)\.(.+)", key)
        if m is None:
            raise KeyError(f"no counterpart for {key}")
        i, rest = int(m.group(1)), m.group(2)
        if rest == "ve_scale":
            out[f"ve_layer_scales.{ve_layers.index(i)}"] = value
        elif banked and rest in bank_slot:
            bank, offset = bank_slot[rest]
            banks[bank][offset + i] = value
        else:
            out[f"blocks.{i}.{layer_names.get(rest, rest)}"] = value
    if banked:
        out |= {name: torch.stack(slices) for name, slices in banks.items()}
    return out


# --- the figures ----------------------------------------------------------------------------


def val_batch(root: Path, seq_len: int, seqs: int) -> tuple[Tensor, Tensor, Path]:
    corpus = build_embedded(root)
    tokens = read_shard(list_shards(corpus.sp1024_dir, "val")[0])
    need = seqs * seq_len + 1
    if len(tokens) < need:
        reps = need // len(tokens) + 1
        tokens = torch.from_numpy(tokens.astype("int64")).repeat(reps).numpy()
    span = torch.from_numpy(tokens[:need].astype("int64"))
    return span[:-1].view(seqs, seq_len), span[1:].view(seqs, seq_len), corpus.tokenizer_model


def bpb_ours(losses: Tensor, x: Tensor, y: Tensor, tokenizer: Path, vocab: int) -> float:
    counter = ByteCounter(sentencepiece_byte_tables(tokenizer, vocab), torch.device("cpu"))
    return float(losses.double().sum()) / math.log(2) / float(counter.count(x, y).sum())


def bpb_theirs(ref, losses: Tensor, x: Tensor, y: Tensor, tokenizer: Path, vocab: int) -> float:
    """The scripts' eval_val accounting: bytes from build_sentencepiece_luts."""
    sp = ref.spm.SentencePieceProcessor(model_file=str(tokenizer))
    base, space, boundary = ref.build_sentencepiece_luts(sp, vocab, torch.device("cpu"))
    prev, tgt = x.reshape(-1), y.reshape(-1)
    token_bytes = base[tgt].to(torch.int16) + (space[tgt] & ~boundary[prev]).to(torch.int16)
    loss_sum = losses.double().sum()
    bits_per_token = loss_sum / token_bytes.double().numel() / math.log(2.0)
    return float(bits_per_token * (token_bytes.double().numel() / token_bytes.double().sum()))


def their_export(ref, source: str, state: dict[str, Tensor], n: int) -> tuple[int, float]:
    """(bytes, round-trip mse) of the script's own export of `state`."""
    cpu = {k: v.detach().cpu() for k, v in state.items()}
    if hasattr(ref, "mixed_quantize_int6"):
        flat = ref._unbank_state_dict(cpu, n)
        cats_text = re.search(r"mixed_quantize_int6\(unbanked_sd, (\{[^}]*\})\)", source)
        cats = eval(cats_text.group(1)) if cats_text else {"mlp", "attn"}  # a set literal
        result, meta = ref.mixed_quantize_int6(flat, cats)
        buf = io.BytesIO()
        torch.save({"w": result, "m": meta}, buf)
        blob = lzma.compress(buf.getvalue(), preset=6)
        restored = ref.dequantize_mixed_int6(result, meta, flat)
    else:
        flat = cpu
        obj, _stats = ref.quantize_state_dict_int8(flat)
        buf = io.BytesIO()
        torch.save(obj, buf)
        blob = zlib.compress(buf.getvalue(), level=9)
        restored = ref.dequantize_state_dict_int8(obj)
    squared = sum(
        float((restored[k].float() - v.float()).double().square().sum()) for k, v in flat.items()
    )
    return len(blob), squared / sum(v.numel() for v in flat.values())


def step_ms(ours, theirs, steps: int) -> list[float]:
    """[ours, theirs] ms per call: one warm-up each, then `steps` rounds alternating the two,
    the fastest of each kept, so a busy CPU weighs on both alike."""
    ours()
    theirs()
    best = [math.inf, math.inf]
    for _ in range(steps):
        for i, fn in enumerate((ours, theirs)):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], 1000 * (time.perf_counter() - start))
    return best


def compare(args: argparse.Namespace) -> dict[str, list]:
    source = args.reference.read_text()
    ref = load_script(args.reference)
    has_jepa = "compute_jepa_loss" in source
    params: dict[str, Any] = {"preset": args.preset, "device": "cpu", "compile": False}
    if has_jepa:
        params["jepa_weight"] = 0.1  # the study's JEPA_LOSS_WEIGHT default
    if args.zstd_level is not None:
        params["zstd_level"] = args.zstd_level
    if args.weights is not None:
        from jepardy.trainer.checkpoint import load_final

        _run, saved, gpt_state = load_final(args.weights)
        params |= {k: saved[k] for k in saved if k not in ("device", "compile", "jepa_weight")}
    config = config_from_params(params)
    torch.manual_seed(config.seed)
    objective = build_objective(config, torch.device("cpu"))
    if args.weights is not None:
        objective.gpt.load_state_dict(gpt_state)
    else:
        synthetic_weights(objective)
    theirs = their_model(ref, config)
    theirs.load_state_dict(
        theirs_from_ours(objective.state_dict(), theirs.state_dict(), config.n_layers), strict=True
    )
    x, y, tokenizer = val_batch(args.data, config.seq_len, args.batch_seqs)
    objective.eval()
    theirs.eval()
    with torch.no_grad():
        hidden = objective.gpt(x)
        logits = objective.gpt.logits(hidden)
        token_losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        loss = [float(token_losses.mean()), float(theirs(x, y))]
        jepa = [None, None]
        if has_jepa and objective.predictor is not None:
            jepa = [float(objective(x, y).jepa), float(theirs.compute_jepa_loss(x, hidden))]
    vocab = config.vocab_size
    bpb = [
        bpb_ours(token_losses, x, y, tokenizer, vocab),
        bpb_theirs(ref, token_losses, x, y, tokenizer, vocab),
    ]
    their_bytes, their_mse = their_export(ref, source, theirs.state_dict(), config.n_layers)
    # Ours: the GPT alone (the predictor is training-only), at a budget equal to theirs.
    fitted = fit_export(
        objective.gpt.state_dict(), config.quant_bits, config.zstd_level, their_bytes
    )

    objective.train()
    theirs.train()

    def ours_step() -> None:
        objective.zero_grad(set_to_none=True)
        objective(x, y).total.backward()

    def theirs_step() -> None:
        theirs.zero_grad(set_to_none=True)
        theirs(x, y).backward()

    timing = step_ms(ours_step, theirs_step, args.steps)
    return {
        "params": [
            sum(p.numel() for p in objective.parameters()),
            sum(p.numel() for p in theirs.parameters()),
        ],
        "loss": loss,
        "jepa_loss": jepa,
        "val_bpb": bpb,
        "model_bytes": [fitted.model_bytes, their_bytes],
        "roundtrip_mse": [fitted.roundtrip_mse, their_mse],
        "step_ms": timing,
    }


def verdicts(r: dict[str, list]) -> dict[str, bool | None]:
    """The acceptance checks of the comparison."""
    (lo, lt), (bo, bt) = r["loss"], r["val_bpb"]
    jo, jt = r["jepa_loss"]
    return {
        "params_equal": r["params"][0] == r["params"][1],
        "loss_rel_diff_below_1e-5": abs(lo - lt) / abs(lt) < 1e-5,
        "jepa_ratio_within_1pct": None if jt is None else abs(jo / jt - 1) < 0.01,
        "val_bpb_equal_to_1e-6": abs(bo - bt) < 1e-6,
        "bytes_no_more": r["model_bytes"][0] <= r["model_bytes"][1],
        "roundtrip_mse_lower": r["roundtrip_mse"][0] < r["roundtrip_mse"][1],
        "step_ms_within_1.05x": r["step_ms"][0] <= 1.05 * r["step_ms"][1],
    }


def print_table(r: dict[str, list], checks: dict[str, bool | None]) -> None:
    print(f"{'figure':<15}{'ours':>18}{'theirs':>18}{'ours/theirs':>14}")
    for key, (ours, theirs) in r.items():
        if ours is None or theirs is None:
            print(f"{key:<15}{'-':>18}{'-':>18}{'-':>14}")
            continue
        ratio = ours / theirs if theirs else float("nan")
        print(f"{key:<15}{ours:>18.10g}{theirs:>18.10g}{ratio:>14.6f}")
    for name, ok in checks.items():
        print(f"check {name}: {'n/a' if ok is None else 'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.reference.is_file():
        print(f"error: --reference {args.reference}: no such file", file=sys.stderr)
        return 2
    result = compare(args)
    checks = verdicts(result)
    print_table(result, checks)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
