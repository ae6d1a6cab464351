"""`jepardy report --against`: arms against a leader (an ingested record, or any sweep) by
the challenge's two rules (analysis/rules.py), each verdict naming the rule it used.

The leader is every done run of the `--against` sweeps pooled into one sample: a record and
its independent reproductions (the leaderboard rule pools them, openai/parameter-golf pull
1902); a record folder's earlier attempts (variant `attempt:<n>`, ingest/records.py) are not
its reported runs and are left out. Each arm group of the other sweeps (or of `--sweep`) is
tested against it with the same Welch tests as the compare table (`compare_pairs`), unpaired:
a leader's seeds are not the arm's. Each arm is a submission of its own against the
leader, so nothing is adjusted across arms (no Holm). A rule asked for on the command line
(--alpha, --margin, --sided) is a third row beside the challenge's two.

A comparison whose two sides scored another metric (a test-time-training score against a
round trip) or other data (vocabulary, tokenizer) gets no verdict, only its p and a flag
saying what differs; other seeds are flagged but tested (Welch needs no common seeds).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from jepardy.analysis import render
from jepardy.analysis.render import Section
from jepardy.analysis.rules import LEADERBOARD, RECORD, Rule, margin_in_metric
from jepardy.analysis.significance import compare_pairs, pack
from jepardy.errors import UserError
from jepardy.store.frames import ARM_KEYS
from jepardy.store.states import RunStatus
from jepardy.store.views import unknown_value

RULES = (LEADERBOARD, RECORD)
ATTEMPT_PREFIX = "attempt:"  # ingest's label for a log's earlier, unreported runs
# Params that say which data a run scored on; a value only one side knows is not compared.
DATA_PARAMS = ("vocab_size", "tokenizer_path")
# What the built-in trainer's val_bpb is: the artifact read back from disk (trainer/scoring).
TRAINER_TIER = "round trip"

COLUMNS = [
    *ARM_KEYS,
    "n",
    "val_bpb_mean",
    "val_bpb_std",
    "leader",
    "leader_n",
    "leader_mean",
    "leader_std",
    "delta_bpb",
    "delta_loss_nats",
    "rule",
    "margin_bpb",
    "p",
    "p_worse",
    "verdict",
    "flags",
    "seeds",
]
_SHOWN = ["arm", "val_bpb", "leader", "delta_bpb", "delta_loss_nats", "rule", "p", "verdict"]
# In a narrow terminal the answer is kept first: the verdict, its rule, the difference and
# its p; the arm's label folds over lines rather than push them out.
_PRIORITY = ("verdict", "rule", "delta_bpb", "p", "arm", "val_bpb", "leader", "delta_loss_nats")
_LABEL_KEYS = ("sweep", "lane", "arm", "variant", "match")


def leader_sweeps(names: Sequence[str], known: Sequence[str], where: str) -> list[str]:
    """The sweeps `--against` names: a sweep of the store, or a record folder (the sweep
    `ingest` gave it, `ingested:<folder name>`). UserError for anything else, saying how to
    ingest a folder that is not in the store."""
    sweeps = []
    for name in names:
        if name in known:
            sweeps.append(name)
            continue
        path = Path(name)
        if not path.exists():
            raise unknown_value("sweep", name, list(known), where)
        # A log's sweep is named after the folder holding it (ingest/ingest.py).
        folder = path.resolve() if path.is_dir() else path.resolve().parent
        ingested = f"ingested:{folder.name}"
        if ingested not in known:
            raise UserError(
                f"report --against {name}: {where} has no sweep {ingested!r}; "
                f"ingest the folder first: jepardy ingest {name}"
            )
        sweeps.append(ingested)
    return list(dict.fromkeys(sweeps))


def against_table(
    runs: pd.DataFrame, leaders: Sequence[str], rules: Sequence[Rule] = RULES
) -> pd.DataFrame:
    """One row per (arm group, rule): every arm group of `runs` outside the `leaders` sweeps
    against the leaders' done runs pooled (see the module docstring). Columns are COLUMNS:
    delta_bpb and delta_loss_nats are arm mean - leader mean; p is the rule's test (one-sided
    Welch, H1: the arm is lower, by more than the rule's margin when it has one, margin_bpb
    in bpb at the runs' val_bpb / val_loss ratio), sided as the rule says; p_worse the other
    direction. `runs` is a tidy runs frame with the params DATA_PARAMS and the `result`
    column (for the metric each run scored)."""
    done = _reported(runs)
    is_leader = done["sweep"].astype(str).isin(list(leaders))
    leader, arms = done[is_leader], done[~is_leader]
    if leader.empty:
        raise UserError(f"report --against: no done runs in {', '.join(leaders)}")
    if arms.empty:
        raise UserError("report --against: no done runs outside the leader to compare with it")
    groups = list(arms.groupby(ARM_KEYS, observed=True, sort=False))
    rows = [_row(key, group, leader, leaders, rule) for key, group in groups for rule in rules]
    return pd.DataFrame(rows, columns=COLUMNS)


def _reported(runs: pd.DataFrame) -> pd.DataFrame:
    """Done runs with a val_bpb, without a log's unreported attempts."""
    done = runs[(runs["status"].astype(str) == RunStatus.DONE.value) & runs["val_bpb"].notna()]
    return done[~done["variant"].astype(str).str.startswith(ATTEMPT_PREFIX)]


def _row(
    key: tuple[str, ...],
    arm: pd.DataFrame,
    leader: pd.DataFrame,
    leaders: Sequence[str],
    rule: Rule,
) -> dict[str, object]:
    p, p_welch, p_worse, margin = _tests(arm, leader, rule)
    flags, blocking = _flags(arm, leader)
    delta_loss = arm["val_loss"].mean() - leader["val_loss"].mean()
    delta = arm["val_bpb"].mean() - leader["val_bpb"].mean()
    n_min = min(len(arm), len(leader))
    return {
        **dict(zip(ARM_KEYS, key, strict=True)),
        "n": len(arm),
        "val_bpb_mean": arm["val_bpb"].mean(),
        "val_bpb_std": arm["val_bpb"].std(),
        "leader": ", ".join(leaders),
        "leader_n": len(leader),
        "leader_mean": leader["val_bpb"].mean(),
        "leader_std": leader["val_bpb"].std(),
        "delta_bpb": delta,
        "delta_loss_nats": delta_loss,
        "rule": rule.describe(),
        "margin_bpb": margin,
        "p": p,
        "p_worse": p_worse,
        "verdict": _verdict(rule, (p, p_welch, p_worse), delta, n_min, blocking),
        "flags": "; ".join(flags),
        "seeds": sorted(arm["seed"].tolist()),
    }


def _tests(arm: pd.DataFrame, leader: pd.DataFrame, rule: Rule) -> tuple[float, ...]:
    """(p of the rule's test, Welch p, p_worse, margin in bpb), sided by the rule (two-sided:
    Welch p and p_worse are both the two-sided p): the compare table's own tests, arm
    (group 1) against the pooled leader (group 0)."""
    both = pd.concat([leader, arm])
    ratio = float((both["val_bpb"] / both["val_loss"]).mean())
    margin = margin_in_metric(ratio, rule.margin_nats) if rule.margin_nats > 0 else np.nan
    ids = pd.Series(np.r_[np.zeros(len(leader)), np.ones(len(arm))].astype(np.int64))
    samples = pack(ids, both["val_bpb"].reset_index(drop=True), 2)
    one, zero = np.array([1]), np.array([0])
    tests = compare_pairs(samples, one, zero, np.array([False]), np.array([margin]))
    better, worse = rule.sided_pair(tests.p_welch, tests.p_worse)
    p_welch = float(better[0])
    p = float(rule.sided_p(tests.p_margin)[0]) if rule.margin_nats > 0 else p_welch
    return p, p_welch, float(worse[0]), margin


def _verdict(
    rule: Rule, tests: tuple[float, float, float], delta: float, n_min: int, blocking: bool
) -> str:
    """The verdict from (p of the rule's test, Welch p, p_worse) and the difference of
    means, whose sign is the direction when the rule is two-sided."""
    p, p_welch, p_worse = tests
    if n_min < 2:
        return "n=1: no test"
    if blocking:
        return "unmatched: no verdict"
    if np.isnan(p):
        return "no test: zero variance or no val_loss"
    if p < rule.alpha and delta < 0:
        return (
            f"beats the leader by {rule.margin_nats:g} nats"
            if rule.margin_nats
            else ("beats the leader")
        )
    if p_worse < rule.alpha and delta > 0:
        return "significantly worse"
    if rule.margin_nats and p_welch < rule.alpha and delta < 0:
        return "better, under margin"
    return "not significant"


def _flags(arm: pd.DataFrame, leader: pd.DataFrame) -> tuple[list[str], bool]:
    """What differs between the two sides ("other metric ...", "other data ...", "other
    seeds ..."), and whether it withholds the verdict (metric or data)."""
    flags = []
    tiers = _tiers(arm), _tiers(leader)
    if tiers[0] != tiers[1]:
        flags.append(f"other metric ({_listed(tiers[0])} vs {_listed(tiers[1])})")
    for name in DATA_PARAMS:
        values = _known(arm, name), _known(leader, name)
        if values[0] and values[1] and values[0] != values[1]:
            flags.append(f"other data ({name} {_listed(values[0])} vs {_listed(values[1])})")
    blocking = bool(flags)
    seeds = sorted(set(arm["seed"].tolist())), sorted(set(leader["seed"].tolist()))
    if seeds[0] != seeds[1]:
        flags.append(f"other seeds ({_listed(seeds[0])} vs {_listed(seeds[1])})")
    return flags, blocking


def _tiers(runs: pd.DataFrame) -> set[str]:
    """The kinds of score the runs report: ingest's `metric_tier` (test-time training,
    sliding window, round trip, ...), the built-in trainer's round trip otherwise."""
    tiers = set()
    for text in runs["result"].tolist() if "result" in runs else []:
        result = json.loads(text) if isinstance(text, str) and text else {}
        tiers.add(result.get("metric_tier") or TRAINER_TIER)
    return tiers or {TRAINER_TIER}


def _known(runs: pd.DataFrame, name: str) -> set[str]:
    if name not in runs:
        return set()
    values = runs[name].dropna().tolist()
    # A tokenizer is known by its file name; the folders differ from machine to machine.
    return {Path(str(v)).name if name == "tokenizer_path" else str(v) for v in values}


def _listed(values: list[int] | set[str]) -> str:
    """A list as it is (seeds, sorted by number), a set sorted."""
    return ", ".join(map(str, values if isinstance(values, list) else sorted(values)))


# --- rendering ---


def against_sections(table: pd.DataFrame) -> list[Section]:
    """One Section: each arm's row per rule, the pooled leader in the title, the flags of
    unmatched comparisons and the rules as notes. The sweep and lane every arm shares are
    said once, in the title, not in every row's label."""
    col = functools.partial(render.column, table)
    nan = np.full(len(table), np.nan)
    shared, labels = _arm_labels(table)
    cells = {
        "arm": labels,
        "val_bpb": render.bpb_column(col("val_bpb_mean"), col("val_bpb_std"), col("n")),
        "leader": render.bpb_column(col("leader_mean"), col("leader_std"), col("leader_n")),
        "delta_bpb": render.delta_column(col("delta_bpb"), nan),
        "delta_loss_nats": render.delta_column(col("delta_loss_nats"), nan),
        "rule": [text.split(":")[0].removesuffix(" rule") for text in render.texts(table, "rule")],
        "p": [render.format_p(p) for p in table["p"].tolist()],
        "verdict": render.texts(table, "verdict"),
    }
    rows = [list(row) for row in zip(*(cells[name] for name in _SHOWN), strict=True)]
    flags = dict.fromkeys(
        f"{a}: {f}" for a, f in zip(cells["arm"], table["flags"], strict=True) if f
    )
    rules = dict.fromkeys(render.texts(table, "rule"))
    leader = table["leader"].iloc[0]
    notes = [*rules, *(f"flag: {text}" for text in flags)]
    title = f"against {leader} (pooled: {int(table['leader_n'].iloc[0])} runs)"
    right = frozenset({"val_bpb", "leader", "delta_bpb"})
    return [
        Section(
            f"{shared} {title}" if shared else title,
            _SHOWN,
            rows,
            right,
            notes=notes,
            priority=_PRIORITY,
            folded=frozenset({"arm"}),
        )
    ]


def _arm_labels(table: pd.DataFrame) -> tuple[str, list[str]]:
    """(the sweep and lane every row shares, joined by " / "; each row's label of the
    other parts, "sweep / lane / arm / variant / match" where nothing is shared)."""
    keys = {key: render.texts(table, key) for key in _LABEL_KEYS}
    common = [k for k in ("sweep", "lane") if len(set(keys[k])) == 1 and keys[k][0]]
    own = [keys[k] for k in _LABEL_KEYS if k not in common]
    labels = [" / ".join(part for part in parts if part) for parts in zip(*own, strict=True)]
    return " / ".join(keys[k][0] for k in common), labels
