"""What each arm changed: the params in which an arm's runs differ from its matched
control's (same sweep, lane and match), one row per (arm, param)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from jepardy.analysis import render
from jepardy.analysis.summary import is_control
from jepardy.store.frames import ARM_KEYS, is_param_column

DIFF_COLUMNS = [*ARM_KEYS, "param", "control", "value"]
# Params that differ between seeds of one arm by design, not between arm and control.
_PER_SEED = {"seed"}
_MATCH = ["sweep", "lane", "match"]


def param_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per arm group and param whose values (over the group's runs) differ from its
    control's: DIFF_COLUMNS, values as a spec writes them (`0.1`, `true`, `—` when unset,
    several comma-joined when the runs of a group differ). Arms without a control in their
    match are left out; rows follow the runs' order of groups, params by name."""
    params = sorted(n for n in runs.columns if is_param_column(n) and n not in _PER_SEED)
    control = is_control(runs)
    controls = {
        key: _values(group, params)
        for key, group in runs[control].groupby(_MATCH, observed=True, sort=False)
    }
    rows = []
    arms = runs[~control].groupby(ARM_KEYS, observed=True, sort=False)
    for key, group in arms:
        reference = controls.get(key[: len(_MATCH)])
        if reference is None:
            continue
        mine = _values(group, params)
        rows += [
            [*key, name, reference[name], mine[name]]
            for name in params
            if mine[name] != reference[name]
        ]
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)


def _values(group: pd.DataFrame, params: list[str]) -> dict[str, str]:
    """Each param's distinct values over `group`'s runs, as text."""
    return {
        name: ", ".join(dict.fromkeys(_text(v) for v in group[name].tolist())) for name in params
    }


def _text(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return render.MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return render.format_number(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)
