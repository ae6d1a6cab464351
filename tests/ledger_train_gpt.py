"""A challenge-style script for the kill-and-resume tests: it sleeps SLEEP_S seconds (or the
seconds written in the file SLEEP_FILE, which a test can change without changing the run's
params and so its id), prints a final metric and the size lines, and appends its RUN_ID to
the file LEDGER as its very last act, so the ledger tells how many times each run ran to
completion. VAL_BPB_SHIFT (default 0) is added to its val_bpb, so an arm can differ from its
control."""

import os
import time

RANK = int(os.environ.get("RANK", "0"))
SEED = int(os.environ.get("SEED", "1"))
if "SLEEP_FILE" in os.environ:
    with open(os.environ["SLEEP_FILE"]) as seconds:
        time.sleep(float(seconds.read()))
else:
    time.sleep(float(os.environ.get("SLEEP_S", "1.0")))
if RANK == 0:
    val_bpb = 1.0 + SEED / 1000 + float(os.environ.get("VAL_BPB_SHIFT", "0"))
    print("model_params:1000", flush=True)
    print(f"final_int8_zlib_roundtrip val_loss:{val_bpb * 1.69:.4f} val_bpb:{val_bpb:.4f}")
    print(f"final_int8_zlib_roundtrip_exact val_loss:{val_bpb * 1.69:.8f} val_bpb:{val_bpb:.8f}")
    print("Serialized model int8+zlib: 1000 bytes")
    print("Total submission size int8+zlib: 2000 bytes", flush=True)
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(os.environ["RUN_ID"] + "\n")
