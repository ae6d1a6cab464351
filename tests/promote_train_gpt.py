"""A challenge-style script for the promotion tests: no training; it sleeps SLEEP_S seconds,
prints a final metric whose value depends on the JEPA weight (a designed effect) and on the
seed (deterministic noise), and appends its RUN_ID to the file LEDGER as its last act.

    val_bpb = 1.2 + EFFECT[w] + noise(SEED, w), w = round(100 * JEPA_LOSS_WEIGHT)
    noise = ((SEED * 7919 + w * 104729) % 997) / 997 * 0.003, in [0, 0.003)

so a weight that helps much, one that helps less and one that hurts can be screened, and a
test can compute from the stored results which of them a rule promotes.
"""

import os
import time

EFFECT = {0: 0.0, 5: -0.004, 10: -0.001, 15: 0.003}
RANK = int(os.environ.get("RANK", "0"))
SEED = int(os.environ.get("SEED", "1"))
WEIGHT = round(100 * float(os.environ.get("JEPA_LOSS_WEIGHT", "0")))
time.sleep(float(os.environ.get("SLEEP_S", "0")))
if RANK == 0:
    noise = ((SEED * 7919 + WEIGHT * 104729) % 997) / 997 * 0.003
    val_bpb = 1.2 + EFFECT.get(WEIGHT, 0.0) + noise
    print("model_params:1000", flush=True)
    print(f"final_int8_zlib_roundtrip val_loss:{val_bpb * 1.69:.4f} val_bpb:{val_bpb:.4f}")
    print(f"final_int8_zlib_roundtrip_exact val_loss:{val_bpb * 1.69:.8f} val_bpb:{val_bpb:.8f}")
    print("Serialized model int8+zlib: 1000 bytes")
    print("Total submission size int8+zlib: 2000 bytes", flush=True)
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(os.environ["RUN_ID"] + "\n")
