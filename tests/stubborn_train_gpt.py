"""A challenge-style script whose processes do not stop when asked, for tests/test_faults.py.

torchrun already starts each worker (this script) in a session of its own; the worker
ignores SIGTERM and starts a child in yet another session (os.setsid through
start_new_session), which ignores it too (an ignored signal stays ignored across exec), so
no process group the job knows of reaches it. It writes "<torchrun pid> <worker pid>
<child pid>" to pids.txt in its working directory (the run directory), then hangs; with
LEAVE_CHILD=1 it prints a final score and exits instead, leaving its child behind.
"""

import os
import signal
import subprocess
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
)
with open("pids.tmp", "w") as pids:
    pids.write(f"{os.getppid()} {os.getpid()} {child.pid}\n")
os.replace("pids.tmp", "pids.txt")
if os.environ.get("LEAVE_CHILD") == "1":
    print("final_int8_zlib_roundtrip_exact val_loss:2.00000000 val_bpb:1.20000000", flush=True)
    sys.exit(0)
time.sleep(600)
