"""Rules as settings: `report --alpha --margin --sided` decide the compare table's verdicts,
each table names the rule it used, and the record rule (0.005 nats, p < 0.01, one-sided)
stays the default."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import runsets
from runsets import R
from scipy import stats
from typer.testing import CliRunner

from jepardy.analysis.compare import (
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    SIGNIFICANT_NO_MARGIN,
    WORSE,
    compare_table,
)
from jepardy.analysis.rules import RECORD, make_rule
from jepardy.cli.app import app
from jepardy.errors import UserError
from jepardy.store.transitions import open_store

LANE = "main"
CONTROL = (1.3000, 1.3020, 1.3010)
BETTER = (1.2960, 1.2970, 1.2980)  # ~0.004 bpb better: significant, under 0.005 nats (0.0072)
WORSE_VALUES = (1.3200, 1.3250, 1.3230)


def _runs(arm: str, values: tuple[float, ...], variant: dict) -> list[R]:
    return [R(LANE, arm, seed, v, variant) for seed, v in enumerate(values, start=1)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    runs = [
        *_runs("control", CONTROL, {}),
        *_runs("better", BETTER, {"jepa_weight": 0.1}),
        *_runs("worse", WORSE_VALUES, {"jepa_weight": 0.2}),
    ]
    runsets.write(open_store(tmp_path / "results.db"), runs)
    return tmp_path / "results.db"


def _table(db: Path, **settings: object) -> pd.DataFrame:
    table = compare_table(open_store(db).runs_frame(), make_rule(**settings))
    return table.set_index("arm")


def test_default_is_the_record_rule(db: Path) -> None:
    assert make_rule() is RECORD
    table = _table(db)
    assert table.loc["better", "verdict"] == SIGNIFICANT
    assert table.loc["worse", "verdict"] == WORSE
    # The margin is 0.005 nats in bpb: val_bpb / val_loss is 1 / ln 2 for these runs.
    assert table.loc["better", "margin_bpb"] == pytest.approx(0.005 / math.log(2))


def test_alpha_margin_and_sides_change_the_verdicts(db: Path) -> None:
    one = _table(db)
    # Holm over the two arms sharing the control: the better arm's p is the smaller one.
    p = one.loc["better", "p_welch"]
    assert p == pytest.approx(stats.ttest_ind(BETTER, CONTROL, equal_var=False).pvalue / 2)
    assert _table(db, alpha=p).loc["better", "verdict"] == NOT_SIGNIFICANT
    no_margin = _table(db, margin_nats=0.0)
    assert no_margin.loc["better", "verdict"] == SIGNIFICANT_NO_MARGIN
    assert no_margin["p_margin"].isna().all()
    # 0.001 nats is 0.0014 bpb: the 0.004 bpb improvement beats it at p < 0.1.
    assert _table(db, alpha=0.1, margin_nats=0.001).loc["better", "verdict"] == "beats margin"
    two = _table(db, sided="two")
    assert two.loc["better", "p_welch"] == pytest.approx(min(1.0, 2 * p))
    assert two.loc["worse", "p_worse"] == pytest.approx(2 * one.loc["worse", "p_worse"])
    assert two.loc["worse", "verdict"] == WORSE


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alpha": 0.0}, "--alpha 0.0: a significance level must be between 0 and 1"),
        ({"alpha": 1.5}, "--alpha 1.5"),
        ({"margin_nats": -0.001}, "--margin -0.001: a margin in nats must be >= 0"),
        ({"margin_nats": math.nan}, "--margin nan"),
        ({"sided": "three"}, "--sided 'three'; allowed: one, two"),
    ],
)
def test_bad_settings_are_user_errors(settings: dict, message: str) -> None:
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(")):
        make_rule(**settings)


def test_report_names_the_rule_it_used(db: Path, cli) -> None:
    runner = CliRunner()
    base = ["report", "--db", str(db), "--format", "markdown"]
    default = runner.invoke(app, base, env={"COLUMNS": "300"})
    assert default.exit_code == 0, default.output
    assert "- verdicts: record rule: 0.005 nats at p < 0.01 (one-sided Welch)" in default.output
    asked = runner.invoke(app, [*base, "--alpha", "0.05", "--margin", "0", "--sided", "two"])
    assert asked.exit_code == 0, asked.output
    assert "- verdicts: report rule: p < 0.05 (two-sided Welch)" in asked.output
    assert f"| {SIGNIFICANT_NO_MARGIN} |" in asked.output and f"| {WORSE} |" in asked.output
    line = cli.refused(*base, "--sided", "both", cwd=db.parent)
    assert line == "error: --sided 'both'; allowed: one, two"


def test_two_sided_p_is_scipys_whichever_way_the_arm_moved(db: Path) -> None:
    """Two-sided, p_welch is scipy's two-sided Welch p for the better arm and the worse one
    alike (not 1 for an arm that got worse), p_paired scipy's two-sided paired p, and the
    verdict says which way."""
    two = _table(db, alpha=0.05, margin_nats=0.0, sided="two")
    for arm, values in (("better", BETTER), ("worse", WORSE_VALUES)):
        welch = stats.ttest_ind(values, CONTROL, equal_var=False).pvalue
        paired = stats.ttest_rel(values, CONTROL).pvalue
        assert two.loc[arm, "p_welch"] == pytest.approx(welch, rel=1e-9)
        assert two.loc[arm, "p_worse"] == pytest.approx(welch, rel=1e-9)
        assert two.loc[arm, "p_paired"] == pytest.approx(paired, rel=1e-9)
    assert two.loc["worse", "p_welch"] < 0.05
    assert two.loc["better", "verdict"] == SIGNIFICANT_NO_MARGIN
    assert two.loc["worse", "verdict"] == WORSE
