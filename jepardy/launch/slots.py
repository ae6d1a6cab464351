"""The devices a local sweep packs its runs onto: GPUs by id, or plain CPU slots.

A run that declares `nproc` processes needs `nproc` GPUs on a GPU machine (one rank per
GPU, as torchrun places them) and one slot on a CPU-only sweep.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from jepardy.errors import UserError


def detect_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`.

    Deliberately not torch.cuda: the orchestrator never initialises CUDA in its own process.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def parse_gpus(text: str) -> list[str]:
    """`--gpus 0,1,3` -> ["0", "1", "3"]; refuses repeats and empty items."""
    ids = [part.strip() for part in text.split(",")]
    if any(not i for i in ids) or len(set(ids)) != len(ids):
        raise UserError(f"--gpus: {text!r} invalid; expected distinct ids like 0,1,2,3")
    return ids


class DevicePool:
    """Free GPUs (or CPU slots) and who holds them.

    With `gpus` empty the pool has `cpu_slots` anonymous slots and jobs get no
    CUDA_VISIBLE_DEVICES of their own.
    """

    def __init__(self, gpus: list[str], cpu_slots: int) -> None:
        if not gpus and cpu_slots < 1:
            raise UserError(f"--slots: {cpu_slots} invalid; must be >= 1")
        self.gpus = list(gpus)
        self.free_gpus = list(gpus)
        self.cpu_slots = cpu_slots
        self.free_cpu = cpu_slots

    @property
    def uses_gpus(self) -> bool:
        return bool(self.gpus)

    @property
    def capacity(self) -> int:
        return len(self.gpus) if self.gpus else self.cpu_slots

    def need(self, nproc: int) -> int:
        """Units of this pool a run of `nproc` processes holds."""
        return nproc if self.gpus else 1

    def fits(self, nproc: int) -> bool:
        """Whether such a run could ever start on this machine."""
        return self.need(nproc) <= self.capacity

    def available(self, nproc: int) -> bool:
        """Whether such a run could start now."""
        free = len(self.free_gpus) if self.gpus else self.free_cpu
        return self.need(nproc) <= free

    def acquire(self, nproc: int) -> tuple[str, ...] | None:
        """The GPU ids for a run (lowest free first), () for a CPU slot, None when busy."""
        if self.gpus:
            if len(self.free_gpus) < nproc:
                return None
            taken, self.free_gpus = self.free_gpus[:nproc], self.free_gpus[nproc:]
            return tuple(taken)
        if self.free_cpu < 1:
            return None
        self.free_cpu -= 1
        return ()

    def release(self, devices: tuple[str, ...]) -> None:
        if self.gpus:
            order = {g: i for i, g in enumerate(self.gpus)}
            self.free_gpus = sorted([*self.free_gpus, *devices], key=order.__getitem__)
        else:
            self.free_cpu += 1
