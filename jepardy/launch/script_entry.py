"""Run a challenge script as `__main__` inside its run directory.

    python -m jepardy.launch.script_entry RUN_DIR SCRIPT [ARGS...]

torchrun starts this in every rank of a `kind = "script"` run. Challenge scripts write into
their working directory (`final_model.pt`, `final_model.int8.ptz`, `logs/<RUN_ID>.txt`);
starting them in their run directory keeps those files with the run, and two runs at once
never overwrite each other's artifact. The script's folder goes first on `sys.path`, as
`python SCRIPT` would put it, so its sibling modules import; `__file__` is the script.
"""

from __future__ import annotations

import os
import runpy
import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        sys.exit("usage: python -m jepardy.launch.script_entry RUN_DIR SCRIPT [ARGS...]")
    run_dir, script = args[0], os.path.abspath(args[1])
    os.chdir(run_dir)
    sys.path.insert(0, os.path.dirname(script))
    sys.argv = [script, *args[2:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
