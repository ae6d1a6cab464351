"""The compare table (analysis/compare.py) as sections: one table per (sweep, lane) for the
terminal, markdown and the HTML report, its cells formatted a column at a time."""

from __future__ import annotations

import functools

import pandas as pd

from jepardy.analysis import render
from jepardy.analysis.compare import NO_TEST_FLAT, NO_TEST_N1
from jepardy.analysis.render import Section
from jepardy.analysis.rules import RECORD, Rule

# Shown columns of the rendered compare table, one table per (sweep, lane).
_SHOWN = [
    "match",
    "arm",
    "variant",
    "n",
    "val_bpb",
    "delta_bpb",
    "delta_loss_nats",
    "p_welch",
    "p_paired",
    "p_margin",
    "verdict",
    "bytes",
    "per seed",
    "note",
]
_RIGHT = frozenset({"n", "val_bpb", "delta_bpb", "delta_loss_nats", "bytes"})
# In a terminal too narrow for every column, these are kept first (after the axis values
# that `match` and `variant` pack), in this order.
_PRIORITY = (
    *("arm", "variant", "val_bpb", "delta_bpb", "verdict", "bytes", "n", "p_welch", "per seed"),
    *("delta_loss_nats", "p_margin", "p_paired", "note"),
)


def compare_sections(table: pd.DataFrame, rule: Rule = RECORD) -> list[Section]:
    """One Section per (sweep, lane), titled "sweep / lane", in the table's row order, with
    the rule its verdicts were decided by as a note.

    Cells are formatted a column at a time (render's column formatters): a 100,000-run
    store has tens of thousands of compare rows.
    """
    cells = _cell_columns(table)
    rows = list(zip(*(cells[name] for name in _SHOWN), strict=True))
    size_flag, no_flag = frozenset({"bytes"}), frozenset()
    flagged = [size_flag if over else no_flag for over in table["over_cap_runs"].tolist()]
    keys = list(zip(render.texts(table, "sweep"), render.texts(table, "lane"), strict=True))
    notes = [f"verdicts: {rule.describe()}"]
    return [
        Section(
            f"{sweep} / {lane}",
            _SHOWN,
            rows[part],
            _RIGHT,
            flagged[part],
            notes,
            packed=frozenset({"match", "variant"}),
            priority=_PRIORITY,
        )
        for (sweep, lane), part in render.blocks(keys)
    ]


def _cell_columns(table: pd.DataFrame) -> dict[str, list[str]]:
    """The shown cells of the compare table, column by column (see _SHOWN)."""
    col = functools.partial(render.column, table)
    verdicts = render.texts(table, "verdict")
    untested = [v in (NO_TEST_N1, NO_TEST_FLAT) for v in verdicts]
    return {
        "match": render.texts(table, "match"),
        "arm": render.texts(table, "arm"),
        "variant": render.texts(table, "variant"),
        "n": render.texts(table, "n"),
        "val_bpb": render.bpb_column(
            col("val_bpb_mean"), col("val_bpb_std"), col("n"), with_n=False
        ),
        "delta_bpb": render.delta_column(col("delta_bpb"), col("delta_bpb_std")),
        "delta_loss_nats": render.delta_column(col("delta_loss_nats"), col("delta_loss_std")),
        # An arm that cannot be tested says why in place of its p-value (`n=1: no test`).
        "p_welch": _untested(
            render.p_column(col("p_welch"), col("p_welch_holm")), untested, verdicts
        ),
        "p_paired": _untested(render.p_column(col("p_paired"), col("p_paired")), untested),
        "p_margin": _untested(render.p_column(col("p_margin"), col("p_margin_holm")), untested),
        "verdict": verdicts,
        "bytes": render.bytes_column(col("artifact_bytes"), col("over_cap_runs"), col("n")),
        "per seed": render.seed_values_column(col("seeds"), col("val_bpb_values")),
        "note": render.texts(table, "note"),
    }


def _untested(cells: list[str], untested: list[bool], why: list[str] | None = None) -> list[str]:
    return [
        (render.MISSING if why is None else reason) if skip else cell
        for cell, skip, reason in zip(cells, untested, why or untested, strict=True)
    ]
