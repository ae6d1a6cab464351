"""Export chosen runs as a Parameter Golf submission: submission.json, a README results
table (per seed, mean, std, bytes), each seed's log and the train_gpt.py that ran.

The runs must be one variant (same sweep, lane, arm, variant and match), done, with distinct
seeds and artifacts within the 16,000,000-byte cap. Selection is made visible
(design/orchestrator.md, "Statistics"): when the store holds other done seeds of the same
variant, or registered seeds that did not finish, submission.json and the README say so.
Runs outside the track (analysis/track.py: hardware, wallclock, script, logs) are refused
unless forced, and a forced submission says why in submission.json and the README.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from jepardy.analysis import render
from jepardy.analysis.track import check_track
from jepardy.errors import UserError
from jepardy.store.frames import ARM_KEYS, load_runs
from jepardy.store.states import RunStatus
from jepardy.trainer.config import ARTIFACT_CAP_BYTES

TRACK = "10min_16mb"
BEGIN, END = "<!-- jepardy:results -->", "<!-- /jepardy:results -->"
_BLOCK = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)


@dataclass(frozen=True)
class SubmissionInfo:
    """What the challenge asks of a submission besides the numbers."""

    name: str
    author: str = ""
    github_id: str = ""
    date: str = field(default_factory=lambda: datetime.now(UTC).date().isoformat())
    track: str = TRACK
    script: Path | None = None  # the script to be shipped; must be the code the runs ran
    force: bool = False  # write runs that do not meet the track, saying so


@dataclass(frozen=True)
class Exported:
    """The files written, and the submission's mean and std of val_bpb."""

    submission_json: Path
    readme: Path
    val_bpb: float
    val_bpb_std: float | None  # None for a single seed
    n: int
    selection_note: str
    track_problems: list[str]  # why the runs are not a track submission (forced); [] if they are


def export_submission(
    db: str | Path, run_ids: Sequence[str], out_dir: Path, info: SubmissionInfo
) -> Exported:
    """Write `out_dir`/submission.json and the results block of `out_dir`/README.md.

    README.md keeps any text outside its `<!-- jepardy:results -->` block; the block is
    replaced (or appended). Each seed's log is copied as train_seed<seed>.log and --script
    as train_gpt.py. UserError for unknown, unfinished, over-cap or mixed runs, repeated
    seeds, and (unless `info.force`) runs outside the track.
    """
    if not run_ids:
        raise UserError("export-submission: give at least one run id")
    if "://" not in str(db) and not Path(db).exists():
        raise UserError(f"export-submission: database {db} does not exist")
    everything = load_runs(db, status=None, provenance=True)
    chosen = _chosen(everything, run_ids)
    if info.script is not None:
        _check_shipped_script(chosen, info.script)
    track = check_track(chosen, info.script)
    if track.problems and not info.force:
        raise UserError(
            f"export-submission: not a {info.track} submission: {'; '.join(track.problems)}; "
            "--force writes it anyway, saying so"
        )
    stats = _seed_table(chosen)
    note = _selection_note(everything, chosen)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = _payload(chosen, stats, info, note)
    payload["jepardy"]["track_problems"] = track.problems
    submission = out_dir / "submission.json"
    submission.write_text(json.dumps(payload, indent=2) + "\n")
    readme = out_dir / "README.md"
    _write_readme(readme, info, _results_block(stats, note, info.track, track.problems))
    for seed, log in track.logs.items():
        shutil.copyfile(log, out_dir / f"train_seed{seed}.log")
    if info.script is not None:
        shutil.copyfile(info.script, out_dir / "train_gpt.py")
    return Exported(
        submission,
        readme,
        payload["val_bpb"],
        payload["val_bpb_std"],
        len(stats),
        note,
        track.problems,
    )


def _chosen(everything: pd.DataFrame, run_ids: Sequence[str]) -> pd.DataFrame:
    """The chosen runs, checked, sorted by seed."""
    ids = list(dict.fromkeys(run_ids))
    found = everything[everything["id"].isin(ids)]
    if unknown := [run_id for run_id in ids if run_id not in set(found["id"])]:
        raise UserError(f"export-submission: unknown run ids: {', '.join(unknown)}")
    not_done = found[found["status"] != RunStatus.DONE.value]
    if not not_done.empty:
        listed = ", ".join(f"{r.id} ({r.status})" for r in not_done.itertuples())
        raise UserError(f"export-submission: runs not done: {listed}")
    variants = found[ARM_KEYS].drop_duplicates()
    if len(variants) > 1:
        shown = "; ".join("/".join(str(v) for v in row if v != "") for row in variants.values)
        raise UserError(f"export-submission: the runs are different variants ({shown}); pick one")
    codes = set(found["code_sha256"].dropna())
    if len(codes) > 1 or (codes and found["code_sha256"].isna().any()):
        raise UserError(
            f"export-submission: the runs ran different or unrecorded code "
            f"({len(codes)} code hashes, {int(found['code_sha256'].isna().sum())} unknown); "
            "a submission's runs must share the code it ships"
        )
    if found["seed"].duplicated().any():
        seeds = sorted(set(found.loc[found["seed"].duplicated(), "seed"]))
        raise UserError(f"export-submission: seeds {seeds} appear twice; one run per seed")
    over = found[~(found["artifact_bytes"] <= ARTIFACT_CAP_BYTES).fillna(False).astype(bool)]
    if not over.empty:
        listed = ", ".join(
            f"{r.id} ({render.format_bytes(r.artifact_bytes)})" for r in over.itertuples()
        )
        raise UserError(
            f"export-submission: artifacts over the {ARTIFACT_CAP_BYTES:,}-byte cap or of "
            f"unknown size: {listed}; not a valid submission"
        )
    return found.sort_values("seed").reset_index(drop=True)


def _check_shipped_script(chosen: pd.DataFrame, script: Path) -> None:
    """The script being shipped must be the code that produced the runs (the study shipped
    another script than the one behind its logs)."""
    if not script.is_file():
        raise UserError(f"export-submission: --script: {script} not found")
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    ran = chosen["code_sha256"].iloc[0]
    if not isinstance(ran, str) or digest != ran:
        ran = ran if isinstance(ran, str) else "unrecorded"
        raise UserError(
            f"export-submission: --script: {script} has sha256 {digest[:12]}…, but the runs "
            f"ran code {ran[:12]}…; ship the script that produced them"
        )


def _seed_table(chosen: pd.DataFrame) -> pd.DataFrame:
    return chosen[["seed", "id", "val_bpb", "val_loss", "artifact_bytes"]]


def _selection_note(everything: pd.DataFrame, chosen: pd.DataFrame) -> str:
    """'' when the chosen seeds are every registered seed of the variant, else what is not."""
    first = chosen.iloc[0]
    same = (everything[ARM_KEYS] == first[ARM_KEYS]).all(axis=1)
    variant = everything[same]
    chosen_seeds = set(chosen["seed"])
    other_done = sorted(
        set(variant.loc[variant["status"] == RunStatus.DONE.value, "seed"]) - chosen_seeds
    )
    unfinished = sorted(
        set(variant.loc[variant["status"] != RunStatus.DONE.value, "seed"]) - chosen_seeds
    )
    parts = []
    if other_done:
        parts.append(f"done seeds left out: {', '.join(map(str, other_done))}")
    if unfinished:
        parts.append(f"registered seeds not done: {', '.join(map(str, unfinished))}")
    if not parts:
        return ""
    registered = len(set(variant["seed"]))
    return f"mean over {len(chosen)} of {registered} registered seeds ({'; '.join(parts)})"


def _payload(
    chosen: pd.DataFrame, seeds: pd.DataFrame, info: SubmissionInfo, note: str
) -> dict[str, Any]:
    """submission.json: the challenge's common fields, then jepardy's provenance."""
    first = chosen.iloc[0]
    result = json.loads(first["result"]) if isinstance(first["result"], str) else {}
    payload: dict[str, Any] = {
        "name": info.name,
        "author": info.author,
        "github_id": info.github_id,
        "date": info.date,
        "track": info.track,
        "val_bpb": float(seeds["val_bpb"].mean()),
        "val_bpb_std": _std(seeds["val_bpb"]),
        "val_loss": float(seeds["val_loss"].mean()),
        "val_loss_std": _std(seeds["val_loss"]),
        "seeds": [int(s) for s in seeds["seed"]],
        "seed_results": {
            str(int(row.seed)): {
                "val_bpb": float(row.val_bpb),
                "val_loss": float(row.val_loss),
                "artifact_bytes": int(row.artifact_bytes),
                "run_id": row.id,
            }
            for row in seeds.itertuples()
        },
        "bytes_total": int(seeds["artifact_bytes"].max()),
        "artifact_under_cap": True,
        "hardware": _hardware(result),
        "pytorch_version": result.get("torch_version", ""),
        "jepardy": {
            "sweep": first["sweep"],
            "lane": first["lane"],
            "arm": first["arm"],
            "variant": first["variant"],
            "match": first["match"],
            "code_sha256": sorted(set(chosen["code_sha256"].dropna())),
            "git_commit": sorted(set(chosen["git_commit"].dropna())),
            "selection": note or "every registered seed",
        },
    }
    return payload


def _std(values: pd.Series) -> float | None:
    """Sample std (ddof=1); None (JSON null) for a single seed rather than a made-up 0."""
    std = values.std(ddof=1)
    return None if math.isnan(std) else float(std)


def _hardware(result: dict[str, Any]) -> str:
    device, world = result.get("device"), result.get("world_size")
    if not device:
        return ""
    return f"{world}x {device}" if world else str(device)


def _results_block(seeds: pd.DataFrame, note: str, track: str, problems: list[str]) -> str:
    """The README results table: one row per seed, then mean and std; what keeps the runs
    out of the track, when forced."""
    lines = [
        BEGIN,
        "| seed | val_bpb | val_loss | artifact bytes | run |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in seeds.itertuples():
        lines.append(
            f"| {int(row.seed)} | {row.val_bpb:.5f} | {row.val_loss:.5f} "
            f"| {render.format_bytes(row.artifact_bytes)} | {row.id} |"
        )
    std = seeds[["val_bpb", "val_loss"]].std(ddof=1)
    lines.append(
        f"| mean | {seeds['val_bpb'].mean():.5f} | {seeds['val_loss'].mean():.5f} "
        f"| {render.format_bytes(seeds['artifact_bytes'].max())} (max) | n={len(seeds)} |"
    )
    lines.append(f"| std | {_fmt(std['val_bpb'])} | {_fmt(std['val_loss'])} |  |  |")
    if note:
        lines += ["", f"Selection: {note}."]
    if problems:
        lines += ["", f"Not a {track} submission: {'; '.join(problems)}."]
    return "\n".join([*lines, END])


def _fmt(value: float) -> str:
    return render.MISSING if math.isnan(value) else f"{value:.5f}"


def _write_readme(path: Path, info: SubmissionInfo, block: str) -> None:
    """Replace the results block of an existing README, or start one."""
    if path.exists():
        text = path.read_text()
        if _BLOCK.search(text):
            text = _BLOCK.sub(lambda _: block, text)
        else:
            text = text.rstrip("\n") + "\n\n## Results\n\n" + block + "\n"
    else:
        text = f"# {info.name}\n\n## Results\n\n{block}\n"
    path.write_text(text)
