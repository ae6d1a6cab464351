"""The compare table: every arm of a sweep against its matched control, and its renderings.

Input is the runs table as a DataFrame (`Store.runs_frame()` or `pandas.read_sql("runs", ...)`);
nothing here speaks SQL. Statistics stay descriptive for now (n, mean, sample std, deltas of
means); significance tests belong to a later piece (design/orchestrator.md, "Statistics").
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from jepardy.errors import UserError
from jepardy.store import RunStatus
from jepardy.trainer.config import ARTIFACT_CAP_BYTES

CONTROL_ARM = "control"
FORMATS = ("table", "markdown", "csv")
NO_CONTROL = "no matched control"
SEEDS_DIFFER = "seeds differ from control"

COLUMNS = [
    "sweep",
    "lane",
    "match",
    "arm",
    "variant",
    "n",
    "val_bpb_mean",
    "val_bpb_std",
    "val_loss_mean",
    "delta_bpb",
    "delta_loss_nats",
    "artifact_bytes",
    "under_cap",
    "seeds",
    "matched_seeds",
    "note",
]
_GROUP = ["sweep", "lane", "match", "arm", "variant"]
_MATCH = ["sweep", "lane", "match"]
# Shown columns of the rendered table, one table per (sweep, lane).
_SHOWN = [
    "match",
    "arm",
    "variant",
    "val_bpb",
    "delta_bpb",
    "delta_loss_nats",
    "artifact_bytes",
    "seeds",
    "note",
]
_RIGHT_ALIGNED = {"val_bpb", "delta_bpb", "delta_loss_nats", "artifact_bytes"}
_MISSING = "—"


# --- the table ---


def compare_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep, lane, match, arm, variant) over the runs whose status is done.

    Columns are COLUMNS: n (runs in the group), val_bpb_mean, val_bpb_std (ddof=1; NaN when
    n == 1), val_loss_mean, delta_bpb and delta_loss_nats (group mean minus the mean of the
    control runs with the same sweep, lane and match; 0 on control rows; NaN with note
    "no matched control" when the match has no done control), artifact_bytes (largest in the
    group), under_cap (every run's artifact_bytes <= ARTIFACT_CAP_BYTES; False when unknown),
    seeds (sorted list), matched_seeds (the group's seed set equals its control's), note.

    Rows: sweeps by name; within a sweep, lanes and matches in order of first appearance;
    within a match the control first, then arms in order of first appearance. Appearance is
    registration order (`seq`, else `created_at`, else row order).
    """
    done = _done_in_order(runs)
    if done.empty:
        return pd.DataFrame(columns=COLUMNS)
    done = _with_ranks(done)
    controls = {
        key: group for key, group in done[done["arm"] == CONTROL_ARM].groupby(_MATCH, sort=False)
    }
    rows = [
        _group_row(group, controls.get(key[:3]))
        for key, group in done.groupby(_GROUP, sort=False, dropna=False)
    ]
    table = pd.DataFrame(rows)
    table = table.sort_values(
        ["sweep", "_lane_rank", "_match_rank", "_is_arm", "_arm_rank"], kind="stable"
    )
    table["artifact_bytes"] = table["artifact_bytes"].astype("Int64")
    return table[COLUMNS].reset_index(drop=True)


def _done_in_order(runs: pd.DataFrame) -> pd.DataFrame:
    """The done runs, in registration order, with numeric result columns as float64."""
    done = runs[runs["status"].astype(str) == RunStatus.DONE.value]
    order = next((name for name in ("seq", "created_at") if name in done.columns), None)
    if order is not None:
        done = done.sort_values(order, kind="stable")
    done = done.reset_index(drop=True)
    for name in ("val_bpb", "val_loss", "artifact_bytes"):
        # float64 whatever the source dtype (Int64, object), so NULL is NaN and comparisons
        # with NaN are False rather than pd.NA.
        done[name] = pd.to_numeric(done[name], errors="coerce").astype("float64")
    return done


def _with_ranks(done: pd.DataFrame) -> pd.DataFrame:
    """Order-of-first-appearance ranks for lanes, matches and arm groups (sort keys)."""
    # ngroup with sort=False numbers groups in the order they first appear.
    return done.assign(
        _lane_rank=done.groupby(["sweep", "lane"], sort=False).ngroup(),
        _match_rank=done.groupby(_MATCH, sort=False).ngroup(),
        _arm_rank=done.groupby(["arm", "variant"], sort=False, dropna=False).ngroup(),
    )


def _group_row(group: pd.DataFrame, control: pd.DataFrame | None) -> dict[str, Any]:
    """The summary row of one arm group, against its match's control runs (or None)."""
    first = group.iloc[0]
    seeds = sorted(int(seed) for seed in group["seed"])
    is_control = first["arm"] == CONTROL_ARM
    row: dict[str, Any] = {name: first[name] for name in _GROUP}
    row.update(
        n=len(group),
        val_bpb_mean=group["val_bpb"].mean(),
        val_bpb_std=group["val_bpb"].std(ddof=1),
        val_loss_mean=group["val_loss"].mean(),
        artifact_bytes=group["artifact_bytes"].max(),
        under_cap=bool((group["artifact_bytes"] <= ARTIFACT_CAP_BYTES).all()),
        seeds=seeds,
        _lane_rank=first["_lane_rank"],
        _match_rank=first["_match_rank"],
        _arm_rank=first["_arm_rank"],
        _is_arm=not is_control,
    )
    row.update(_versus_control(row, control, is_control))
    return row


def _versus_control(
    row: dict[str, Any], control: pd.DataFrame | None, is_control: bool
) -> dict[str, Any]:
    """delta_bpb, delta_loss_nats, matched_seeds and note of one group row."""
    if is_control:
        return {"delta_bpb": 0.0, "delta_loss_nats": 0.0, "matched_seeds": True, "note": ""}
    if control is None:
        return {
            "delta_bpb": math.nan,
            "delta_loss_nats": math.nan,
            "matched_seeds": False,
            "note": NO_CONTROL,
        }
    matched = set(row["seeds"]) == {int(seed) for seed in control["seed"]}
    return {
        "delta_bpb": row["val_bpb_mean"] - control["val_bpb"].mean(),
        "delta_loss_nats": row["val_loss_mean"] - control["val_loss"].mean(),
        "matched_seeds": matched,
        "note": "" if matched else SEEDS_DIFFER,
    }


# --- rendering ---


def render_compare(table: pd.DataFrame, fmt: str) -> str | Group:
    """Render a compare_table result.

    "table": a rich Group holding one rich Table per (sweep, lane), titled "sweep / lane"
    (print it with a rich Console). "markdown": GitHub markdown, a "### sweep / lane" heading
    and a table per lane, with the same columns. "csv": every column of `table`, seeds as a
    JSON list. An unknown `fmt` is a UserError listing the allowed values.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "csv":
        return table.assign(seeds=table["seeds"].map(json.dumps)).to_csv(index=False)
    lanes = [(f"{sweep} / {lane}", rows) for (sweep, lane), rows in _by_lane(table)]
    if fmt == "markdown":
        return "\n".join(_markdown(title, rows) for title, rows in lanes)
    return Group(*(_rich_table(title, rows) for title, rows in lanes))


def _by_lane(table: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """(sweep, lane) blocks in the table's own row order."""
    return list(table.groupby(["sweep", "lane"], sort=False))


def _cells(row: pd.Series) -> list[str]:
    """The shown cells of one compare row, formatted (see _SHOWN)."""
    return [
        str(row["match"]),
        str(row["arm"]),
        str(row["variant"]),
        format_bpb(row["val_bpb_mean"], row["val_bpb_std"], int(row["n"])),
        format_delta(row["delta_bpb"]),
        format_delta(row["delta_loss_nats"]),
        format_bytes(row["artifact_bytes"]),
        ", ".join(str(seed) for seed in row["seeds"]),
        str(row["note"]),
    ]


def format_bpb(mean: float, std: float, n: int) -> str:
    """`1.2345 ± 0.0012 (n=2)`; the ± part is left out when std is undefined (n == 1)."""
    if pd.isna(mean):
        return _MISSING
    spread = "" if pd.isna(std) else f" ± {std:.4f}"
    return f"{mean:.4f}{spread} (n={n})"


def format_delta(value: float) -> str:
    """Signed, four decimals: `+0.0012`, `-0.0030`; a dash when undefined."""
    if pd.isna(value):
        return _MISSING
    # Adding 0.0 turns -0.0 into 0.0, so an exact tie prints +0.0000.
    return f"{value + 0.0:+.4f}"


def format_bytes(value: Any) -> str:
    """Thousands separators, and `OVER CAP` past ARTIFACT_CAP_BYTES."""
    if pd.isna(value):
        return _MISSING
    flag = " OVER CAP" if _over_cap(value) else ""
    return f"{int(value):,}{flag}"


def _over_cap(value: Any) -> bool:
    """Known to be over the cap (an unknown size is not flagged here; under_cap says False)."""
    return not pd.isna(value) and value > ARTIFACT_CAP_BYTES


def _markdown(title: str, rows: pd.DataFrame) -> str:
    """One lane as a heading and a GitHub markdown table."""
    lines = [f"### {title}", "", _md_line(_SHOWN), _md_line(["---"] * len(_SHOWN))]
    lines += [_md_line(_cells(row)) for _, row in rows.iterrows()]
    return "\n".join([*lines, ""])


def _md_line(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _rich_table(title: str, rows: pd.DataFrame) -> Table:
    """One lane as a rich Table; over-cap sizes in bold red."""
    table = Table(title=title)
    for name in _SHOWN:
        table.add_column(name, justify="right" if name in _RIGHT_ALIGNED else "left")
    size = _SHOWN.index("artifact_bytes")
    for _, row in rows.iterrows():
        cells: list[str | Text] = list(_cells(row))
        if _over_cap(row["artifact_bytes"]):
            cells[size] = Text(str(cells[size]), style="bold red")
        table.add_row(*cells)
    return table
