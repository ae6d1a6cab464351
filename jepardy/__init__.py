"""jepardy: declarative, matched-control ablation sweeps for Parameter Golf trainers."""

__version__ = "0.1.0"
