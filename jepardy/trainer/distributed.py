"""The distributed context of a run: which rank this process is, how many there are, and on
which device it computes; plus the few collective helpers the training loop needs.

One `Dist` is made by `init_distributed` (in `main()`, the only place that touches process
groups) and passed whole to the data, the optimizer, evaluation and scoring, instead of a
hand-threaded `(rank, world, device)`. A single-process run, a test or a benchmark uses
`Dist.local(device)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from jepardy.errors import UserError


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @classmethod
    def local(cls, device: torch.device | str = "cpu") -> Dist:
        """One process, no process group."""
        return cls(rank=0, world=1, device=torch.device(device))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device_name(self) -> str:
        """The accelerator's name (for MFU), "cpu" on a CPU."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return "cpu"

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed(device_setting: str) -> Dist:
    """Join torchrun's process group when launched by it; nccl on CUDA, gloo on CPU."""
    use_cuda = device_setting == "cuda" or (device_setting == "auto" and torch.cuda.is_available())
    if device_setting == "cuda" and not torch.cuda.is_available():
        raise UserError("config: device: 'cuda' requested but no CUDA device is available")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        # Attention only through fused kernels (flash, cuDNN): a shape they cannot take is
        # an error here, never a silent fall-back to the slow paths.
        torch.backends.cuda.enable_flash_sdp(True)
        torch.backends.cuda.enable_cudnn_sdp(True)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_math_sdp(False)
    if world > 1:
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None
        )
    return Dist(rank=rank, world=world, device=device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mean_over_ranks(tensors: dict[str, torch.Tensor], env: Dist) -> dict[str, float]:
    """Average scalar tensors over ranks (a host sync: call on log steps only)."""
    stacked = torch.stack([t.detach().float() for t in tensors.values()])
    if env.world > 1:
        dist.all_reduce(stacked)
        stacked /= env.world
    return dict(zip(tensors, stacked.tolist(), strict=True))


class BudgetFlag:
    """Whether any rank's clock has passed the budget, agreed by all ranks so none hangs.

    One rank: its own host clock, no communication. Several: each step posts its flag (an
    all-reduce queued behind the step) and reads the flag posted one step earlier, so on
    CUDA the host waits for the previous step while the current one runs, never for the
    queue to drain. The run therefore stops one step after the clock ran out, on all ranks.
    """

    def __init__(self, env: Dist) -> None:
        self.env = env
        self.pending: torch.Tensor | None = None
        self.event = torch.cuda.Event() if env.device.type == "cuda" else None
        self.host = torch.zeros(1, pin_memory=env.device.type == "cuda")

    def spent(self, elapsed_s: float, budget_s: float) -> bool:
        if self.env.world == 1:
            return elapsed_s >= budget_s
        stop = self._read()
        flag = torch.full((1,), 1.0 if elapsed_s >= budget_s else 0.0, device=self.env.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if self.event is not None:
            self.host.copy_(flag, non_blocking=True)
            self.event.record()
        self.pending = flag
        return stop

    def _read(self) -> bool:
        if self.pending is None:
            return False
        if self.event is None:
            return bool(self.pending.item())  # gloo: already complete
        self.event.synchronize()
        return bool(self.host.item())
