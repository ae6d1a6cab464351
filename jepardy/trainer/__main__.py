"""`python -m jepardy.trainer --config run.json --out RUN_DIR` (under torchrun or alone)."""

import sys

from jepardy.trainer.train import main

sys.exit(main())
