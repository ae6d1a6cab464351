#!/usr/bin/env bash
# The trainer's GPU check, one command, under 8 minutes on one H100:
#
#   bench/gpu_check.sh [--device cuda|cpu] [--tiny] [--reference PATH/train_gpt.py] [--out DIR]
#
# 1. builds the embedded corpus (offline: a device machine reaches nothing outside);
# 2. trains leader_stack for 120 s of wallclock with torch.compile and bf16 (one GPU; the
#    challenge's 786,432-token batch as 8 micro-steps of 98,304, as its scripts do on 1 rank),
#    then exports to the byte cap and scores the artifact read back from disk;
# 3. prints tokens/s, MFU, step time, artifact bytes, under_cap and val_bpb from result.json;
# 4. with --reference (a challenge script, e.g. the 2026-03-23 record's; CUDA only, and it needs
#    its flash_attn_3 kernels), times it at the same shapes with bench/trainer_throughput.py
#    and prints our step time over theirs.
#
# `--device cpu --tiny` runs the same path at toy size (presets.reduced) on a CPU in seconds:
# that is how the check is tested (tests/test_gpu_check.py). Exit code: the trainer's.
set -euo pipefail

DEVICE=cuda
TINY=0
REFERENCE=""
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --tiny) TINY=1; shift ;;
        --reference) REFERENCE="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "error: unknown argument $1" >&2; exit 2 ;;
    esac
done
PYTHON="${PYTHON:-python}"
OUT="${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}"
mkdir -p "$OUT"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
START=$(date +%s)

# 1-2. corpus and run.json (python: the params go through the trainer's own validation).
"$PYTHON" - "$OUT" "$DEVICE" "$TINY" <<'EOF'
import json, sys
from pathlib import Path

from jepardy.data.corpus import build_embedded
from jepardy.trainer.config import config_from_params
from jepardy.trainer.presets import reduced

out, device, tiny = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
corpus = build_embedded(out / "data")
if tiny:
    params = reduced("leader_stack")
else:
    params = {
        "preset": "leader_stack",
        "wallclock_s": 120.0,
        # One rank: the challenge scripts' 8 // world_size micro-steps of the global batch.
        "micro_batch_tokens": 98_304,
        "log_every": 50,
    }
params |= {
    "data_dir": str(corpus.sp1024_dir),
    "tokenizer_path": str(corpus.tokenizer_model),
    "device": device,
}
config_from_params(params)  # refuse a bad combination before anything starts
(out / "run.json").write_text(json.dumps({"run_id": "gpu_check", "params": params}, indent=1))
(out / "tokenizer.txt").write_text(str(corpus.tokenizer_model))
EOF

# 3. train, export, score (the trainer writes result.json whatever happens).
STATUS=0
"$PYTHON" -m jepardy.trainer --config "$OUT/run.json" --out "$OUT/run" || STATUS=$?

"$PYTHON" - "$OUT/run/result.json" <<'EOF'
import json, sys

r = json.load(open(sys.argv[1]))
steps = r.get("steps") or 0
step_ms = 1000 * r["train_time_s"] / steps if steps else None
fields = {
    "status": r["status"],
    "device_name": r.get("device_name"),
    "compiled": r.get("compiled"),
    "steps": steps,
    "tokens_per_s": r.get("tokens_per_s"),
    "mfu": r.get("mfu"),
    "step_ms": step_ms,
    "artifact_bytes": r.get("artifact_bytes"),
    "model_bytes": r.get("model_bytes"),
    "export_floor_unit": r.get("export_floor_unit"),
    "roundtrip_mse": r.get("roundtrip_mse"),
    "under_cap": r.get("under_cap"),
    "prequant_val_bpb": r.get("prequant_val_bpb"),
    "val_bpb": r.get("val_bpb"),
    "sliding_val_bpb": r.get("sliding_val_bpb"),
}
for key, value in fields.items():
    print(f"gpu_check {key}:{value}")
print("gpu_check_result " + json.dumps(fields))
EOF

# 4. the challenge script at the same shapes, for the ratio.
if [[ -n "$REFERENCE" ]]; then
    if [[ "$DEVICE" != "cuda" ]]; then
        echo "gpu_check reference: skipped (a challenge script needs CUDA)"
    else
        TINY_FLAG=()
        [[ "$TINY" == 1 ]] && TINY_FLAG=(--tiny)
        "$PYTHON" "$HERE/trainer_throughput.py" --preset leader_stack --device cuda \
            --steps 20 --warmup 10 --reference "$REFERENCE" \
            --tokenizer "$(cat "$OUT/tokenizer.txt")" "${TINY_FLAG[@]}" \
            || echo "gpu_check reference: failed (see above; the records need flash_attn_3)"
    fi
fi
echo "gpu_check wall_s:$(( $(date +%s) - START )) out:$OUT"
exit "$STATUS"
