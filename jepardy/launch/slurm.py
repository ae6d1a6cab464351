"""Runs as Slurm jobs: submitit submits, Slurm runs, jepardy reads states and result files.

submitit is the submission layer only (sbatch script, pickled job callable, requeue on
preemption and timeout). Each run is one Slurm job with one task per node; each task runs
`torchrun` for its node (`node_torchrun_argv`): `--nnodes` from the allocation, `--node_rank`
from SLURM_NODEID and a c10d rendezvous on the allocation's first node. One task per node
avoids the double spawn that submitit's maintainers warn about when torchrun is wrapped in a
task per GPU (facebookincubator/submitit#1764).

Job states: submitit's own watcher asks `sacct`, which fails on a cluster without slurmdbd
(accounting is optional and our test cluster has none). So live jobs are read with one
batched `squeue` call (it knows a job while it is queued or running and for MinJobAge seconds
after it ends), and a job squeue no longer knows has ended: its outcome is the run directory's
own files (result.json, written atomically by the trainer; `slurm_exit.json` by the task).
Slurm's state strings stop here: `job_status` maps them onto the store's RunStatus.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jepardy.errors import UserError
from jepardy.launch.command import SCRIPT, run_argv, script_environment
from jepardy.launch.executor import JobState
from jepardy.launch.rundir import STDOUT_LOG
from jepardy.spec.identity import RunIdentity
from jepardy.spec.slurm import SlurmOptions
from jepardy.store.states import Claim, JobRecord, RunStatus

SLURM = "slurm"
JOB_NAME_PREFIX = "jepardy-"
SUBMITIT_FOLDER = ".submitit"  # beside a sweep's run directories
EXIT_FILE = "slurm_exit.json"  # {"exit_code": int} written by node 0's task
# The c10d store listens on the first node at a port of the job's own: jobs sharing a node
# (small screens packed by Slurm) would otherwise race for one fixed port and crash with
# DistNetworkError. Job ids are unique per cluster, so consecutive jobs never share one.
RDZV_PORT_BASE = 20000
RDZV_PORT_SPAN = 20000


def rdzv_port(job_id: str) -> int:
    """The rendezvous port of Slurm job `job_id` (an array task's own SLURM_JOB_ID)."""
    return RDZV_PORT_BASE + int(job_id) % RDZV_PORT_SPAN


# Slurm job states (squeue %T) -> the store's status. A queued, running, requeued or
# suspended job is still held by its run ("running" in the store, the Slurm state beside it).
_LIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "STAGE_OUT",
        # Preempted or node-failed jobs are requeued by Slurm (--requeue) or by submitit's
        # checkpoint handler; squeue shows them PENDING again soon after.
        "PREEMPTED",
        "NODE_FAIL",
    }
)
_FAILED = frozenset({"FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"})


def job_status(slurm_state: str) -> RunStatus:
    """The store's status of a job in `slurm_state` (squeue's %T; "" when squeue no longer
    knows the job). DONE means "ended cleanly as far as Slurm knows": the caller confirms it
    with the run directory's result.json and records FAILED when that is not done."""
    state = slurm_state.split()[0].rstrip("+") if slurm_state else ""
    if state in _LIVE:
        return RunStatus.RUNNING
    if state == "TIMEOUT":
        return RunStatus.TIMEOUT
    if state == "CANCELLED":
        return RunStatus.CANCELLED
    if state in _FAILED:
        return RunStatus.FAILED
    return RunStatus.DONE  # COMPLETED, or gone from squeue: the files decide


def scontrol_hostnames(nodelist: str) -> list[str]:
    """`scontrol show hostnames NODELIST`: a compressed list like gpu[01-02] expanded."""
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return out.split()


def node_torchrun_argv(
    run: RunIdentity,
    run_dir: Path,
    slurm_env: Mapping[str, str],
    hostnames: Callable[[str], list[str]] = scontrol_hostnames,
) -> list[str]:
    """The torchrun argv of one node of a run's Slurm job.

    `slurm_env` holds SLURM_JOB_ID, SLURM_JOB_NUM_NODES (or SLURM_NNODES), SLURM_NODEID and
    SLURM_JOB_NODELIST; `hostnames` expands the node list (scontrol by default). The command is
    the local one (`command.run_argv`) with `--standalone` replaced by a c10d rendezvous on the
    first node, so every node's torchrun joins the same job-scoped rendezvous.
    """
    nnodes = int(slurm_env.get("SLURM_JOB_NUM_NODES") or slurm_env["SLURM_NNODES"])
    job_id = slurm_env["SLURM_JOB_ID"]
    first = hostnames(slurm_env["SLURM_JOB_NODELIST"])[0]
    return _multi_node(
        run_argv(run, run_dir),
        str(nnodes),
        str(int(slurm_env["SLURM_NODEID"])),
        f"{first}:{rdzv_port(job_id)}",
        job_id,
    )


def node_command_template(run: RunIdentity, run_dir: Path, nnodes: int) -> str:
    """What each node's task of the run's job runs, with the values Slurm gives it at run
    time as placeholders (for a dry run)."""
    argv = _multi_node(
        run_argv(run, run_dir),
        str(nnodes),
        "$SLURM_NODEID",
        f"<first node>:<{RDZV_PORT_BASE} + $SLURM_JOB_ID % {RDZV_PORT_SPAN}>",
        "$SLURM_JOB_ID",
    )
    return " ".join(argv)


def _multi_node(argv: list[str], nnodes: str, node_rank: str, endpoint: str, job: str) -> list[str]:
    """A one-machine torchrun argv turned into one node's: `--standalone` replaced by the
    node count, this node's rank and the job's c10d rendezvous."""
    at = argv.index("--standalone")
    multi_node = [
        f"--nnodes={nnodes}",
        f"--node_rank={node_rank}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={endpoint}",
        f"--rdzv_id={job}",
    ]
    return [*argv[:at], *multi_node, *argv[at + 1 :]]


@dataclass(frozen=True)
class NodeTask:
    """The callable submitit pickles: one node's torchrun for one run (run in each task).

    Picklable plain data only. On preemption or timeout submitit calls `checkpoint` and
    requeues the same task (a fresh start of the run: the trainer has no mid-run resume).
    """

    run: Any  # a RunIdentity (RunIdentity or RunIdentity), pickled by value
    run_dir: str
    threads_per_rank: int = 1

    def __call__(self) -> int:
        env = os.environ
        node = int(env.get("SLURM_NODEID", "0"))
        run_dir = Path(self.run_dir)
        argv = node_torchrun_argv(self.run, run_dir, env)
        child_env = {**env, "PYTHONUNBUFFERED": "1"}
        child_env.setdefault("OMP_NUM_THREADS", str(self.threads_per_rank))
        if self.run.kind == SCRIPT:
            child_env |= script_environment(self.run)
        log = run_dir / (STDOUT_LOG if node == 0 else f"stdout.node{node}.log")
        if node == 0:
            (run_dir / EXIT_FILE).unlink(missing_ok=True)
        with log.open("wb") as out:
            code = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, env=child_env
            ).returncode
        if node == 0:
            (run_dir / EXIT_FILE).write_text(json.dumps({"exit_code": code}))
        if code != 0:
            raise SystemExit(code)  # the Slurm job ends FAILED
        return code

    def checkpoint(self) -> Any:
        """submitit's preemption/timeout hook: requeue this same task."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


@dataclass(frozen=True)
class LiveJob:
    """One job as squeue reports it."""

    job_id: str
    state: str  # Slurm's %T, e.g. PENDING, RUNNING
    nodes: str  # %N, the node list ("" while pending)


def squeue(job_ids: list[str]) -> dict[str, LiveJob]:
    """The given jobs squeue still knows (queued, running, or ended within MinJobAge), in one
    call. A job missing from the answer has ended and been purged."""
    if not job_ids:
        return {}
    proc = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", ",".join(job_ids), "-o", "%i|%T|%N"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        raise UserError(f"squeue failed: {' '.join(proc.stderr.split())}")
    jobs = {}
    for line in proc.stdout.splitlines():
        job_id, state, nodes = [*line.split("|"), "", ""][:3]
        jobs[job_id.strip()] = LiveJob(job_id.strip(), state.strip(), nodes.strip())
    return jobs


def jobs_named(name: str) -> list[str]:
    """Ids of the live jobs of this user named `name` (a submission whose id was lost)."""
    proc = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=False
    )
    return proc.stdout.split()


def scancel(job_ids: list[str]) -> None:
    """Cancel jobs (already-ended ones are ignored by Slurm)."""
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, check=False, timeout=60)


def exit_code(run_dir: Path) -> int | None:
    """Node 0's torchrun exit status, None when its task never wrote it (killed, preempted)."""
    try:
        return int(json.loads((run_dir / EXIT_FILE).read_text())["exit_code"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, ValueError):
        return None


def job_name(run: RunIdentity) -> str:
    return f"{JOB_NAME_PREFIX}{run.run_id}"


class SlurmExecutor:
    """The Executor (executor.py) of Slurm: submits through submitit, reads and cancels jobs
    with squeue/scancel. Slurm queues and places jobs itself, so there is always room."""

    name = SLURM
    poll_s = 2.0  # one batched squeue call per poll
    jobs_outlive_orchestrator = True

    def __init__(self, options: SlurmOptions) -> None:
        self.options = options
        # Jobs one poll saw ended; the next poll confirms it (see `poll`).
        self._ending: set[str] = set()

    def has_room(self, run: RunIdentity) -> bool:
        return True

    def sbatch_script(self, run: RunIdentity, run_dir: Path, timeout_s: float | None) -> str:
        """The sbatch script `submit` would send for `run`, without sending it (a dry run),
        and what each node's task then runs."""
        executor = self._submitit(run_dir)
        executor.update_parameters(**self._parameters(run, timeout_s))
        # submitit's own renderer, the text it writes before calling sbatch (a private
        # method; tests/test_slurm.py pins its shape).
        script = executor._make_submission_file_text(executor._submitit_command_str, "dryrun")
        node = node_command_template(run, run_dir, self.options.nodes)
        return f"{script.rstrip()}\n# each node's task runs (jepardy NodeTask):\n# {node}\n"

    def _submitit(self, run_dir: Path) -> Any:
        """A submitit executor whose files (script, pickles, logs) go to the `.submitit`
        folder beside the run's directory: runs/<sweep>/.submitit, where `jepardy logs`
        looks."""
        import submitit

        folder = run_dir.parent / SUBMITIT_FOLDER
        return submitit.SlurmExecutor(folder=folder, max_num_timeout=3, python=sys.executable)

    def submit(
        self, run: RunIdentity, run_dir: Path, argv: list[str], timeout_s: float | None
    ) -> JobRecord:
        """sbatch one run (its node tasks build their own torchrun argv from `run`); UserError
        with sbatch's message when it refuses the job."""
        import submitit

        executor = self._submitit(run_dir)
        executor.update_parameters(**self._parameters(run, timeout_s))
        try:
            # submitit prints a failed sbatch's stderr before raising it; the error says it.
            with contextlib.redirect_stderr(io.StringIO()):
                job = executor.submit(NodeTask(run, str(run_dir)))
        except (submitit.core.utils.FailedJobError, OSError) as exc:
            # sbatch's own words name the setting it refused (partition, account, time...).
            lines = [line.removeprefix("sbatch: error: ").strip() for line in str(exc).splitlines()]
            message = "; ".join(line for line in lines if line)
            raise UserError(f"sbatch refused run {run.run_id}: {message}") from exc
        return JobRecord(run.run_id, str(job.job_id), "PENDING")

    def poll(self, job_ids: list[str]) -> dict[str, JobState]:
        """One squeue call; a job squeue no longer knows has ended (state "")."""
        live = squeue(job_ids)
        states = {}
        for job_id in job_ids:
            seen = live.get(job_id)
            state = seen.state if seen else ""
            status = job_status(state)
            # A job Slurm requeues (scontrol requeue, submitit's preemption handler) can show
            # FAILED for a moment before PENDING again: an end counts when two polls agree.
            if status is RunStatus.RUNNING or job_id in self._ending:
                self._ending.discard(job_id)
            else:
                self._ending.add(job_id)
                status = RunStatus.RUNNING
            states[job_id] = JobState(status, state, seen.nodes if seen else "")
        return states

    def exit_code(self, job_id: str, run_dir: Path) -> int | None:
        return exit_code(run_dir)

    def cancel(self, job_ids: list[str], *, force: bool = False) -> None:
        """scancel (Slurm signals the job's steps and kills them after its KillWait)."""
        scancel(job_ids)

    def recover(self, claim: Claim, run: RunIdentity) -> str | None:
        """The recorded job, or the live one named after the run when the orchestrator died
        between sbatch and recording its id; the tracker follows it (squeue still knows it,
        or its files decide)."""
        if claim.job_id:
            return claim.job_id
        named = jobs_named(job_name(run))
        return named[0] if named else None

    def _parameters(self, run: RunIdentity, timeout_s: float | None) -> dict[str, Any]:
        o = self.options
        minutes = o.time or (int(timeout_s // 60) + 1 if timeout_s else 60)
        params: dict[str, Any] = {
            "job_name": job_name(run),
            "nodes": o.nodes,
            "ntasks_per_node": 1,
            "cpus_per_task": run.nproc,  # one core per rank
            "time": minutes,
            "additional_parameters": {"requeue": True},
        }
        optional = {
            "partition": o.partition,
            "gpus_per_node": o.gpus_per_node,
            "account": o.account,
            "qos": o.qos,
            "constraint": o.constraint,
        }
        params |= {k: v for k, v in optional.items() if v is not None}
        return params
