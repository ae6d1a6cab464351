"""Promotion between lanes without launching anything: the spec's `promote` table and its
one-line mistakes, decisions made from a real store's results (SQLite and PostgreSQL),
recorded once with their evidence and read back, never made again."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy import stats

from jepardy.analysis.report import ReportRequest, rendered_text, run_report
from jepardy.errors import UserError
from jepardy.launch.command import trainer_schema
from jepardy.launch.promotion import advance, chain_lines, recorded_chain
from jepardy.spec.expand import expand_runs
from jepardy.spec.parse import load_spec
from jepardy.store.promotions import read_decisions
from jepardy.store.states import RunOutcome, RunStatus
from jepardy.store.transitions import Store, open_store

SCRIPT = Path(__file__).parent / "promote_train_gpt.py"
SPEC = f"""
[sweep]
name = "chain"
seeds = [1, 2, 3]

[trainer]
kind = "script"
path = "{SCRIPT}"

[lanes.screen]
control = {{ jepa_weight = 0.0 }}

[lanes.screen.arms.jepa]
jepa_weight = [0.05, 0.10, 0.15]

[lanes.long]
seeds = [4]
params = {{ wallclock_s = 600.0 }}
control = {{ jepa_weight = 0.0 }}
promote = {{ from = "screen", top = 1, rule = "p < 0.25" }}
"""
# val_bpb per (jepa_weight, seed): 0.10 helps most, 0.05 a little, 0.15 hurts.
RESULTS = {
    0.0: {1: 1.2000, 2: 1.2010, 3: 1.2005},
    0.05: {1: 1.1990, 2: 1.1985, 3: 1.2000},
    0.10: {1: 1.1960, 2: 1.1970, 3: 1.1950},
    0.15: {1: 1.2040, 2: 1.2050, 3: 1.2030},
}


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def _refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as caught:
        load_spec(_spec(tmp_path, text), trainer_schema())
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "spec.toml"))
    return message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('from = "screen"', 'from = "later"', "lanes.long.promote.from: 'later' is not an earlier"),
        ('from = "screen"', 'from = "long"', "lanes.long.promote.from: 'long' is not an earlier"),
        ('"p < 0.25"', '"q < 0.25"', "lanes.long.promote.rule: 'q < 0.25': unknown quantity 'q'"),
        ('"p < 0.25"', '"p < 1.5"', "p < 1.5: a p-value threshold is in (0, 1]"),
        ('"p < 0.25"', '"delta < x"', "'x' is not a finite number"),
        ('"p < 0.25"', '"p = 0.25"', "'p = 0.25' is not `quantity < number`"),
        ("top = 1", "top = 0", "lanes.long.promote.top: 0 is not an int >= 1"),
        ("top = 1, ", "top = 1, by = 2, ", "lanes.long.promote.by: unknown key"),
        (', top = 1, rule = "p < 0.25"', "", "lanes.long.promote: needs a rule, a top or both"),
    ],
)
def test_promote_mistakes_are_one_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in SPEC
    assert expected in _refused(tmp_path, SPEC.replace(old, new))


def test_a_cycle_through_later_lanes_is_refused(tmp_path: Path) -> None:
    """Two lanes promoting from each other: the first names a later lane."""
    text = SPEC.replace(
        "[lanes.screen]\n", '[lanes.screen]\npromote = { from = "long", top = 1 }\n'
    )
    assert "lanes.screen.promote.from: 'long' is not an earlier lane" in _refused(tmp_path, text)


def test_gate_arms_and_promoted_fields_are_checked(tmp_path: Path) -> None:
    gate = SPEC + "\n[lanes.long.arms.wide]\nITERATIONS_X = 1\n"
    assert "lanes.long.arms.wide: no arm 'wide' in lane screen" in _refused(tmp_path, gate)
    axis = SPEC.replace("seeds = [4]\n", "seeds = [4]\naxes = { jepa_weight = [0.2] }\n")
    assert "lanes.long.axes.jepa_weight: also a field of the arms promoted" in _refused(
        tmp_path, axis
    )
    bare = SPEC.replace("[lanes.screen.arms.jepa]\njepa_weight = [0.05, 0.10, 0.15]\n", "")
    assert "lane screen has no arms but its control" in _refused(tmp_path, bare)


def _filled_store(tmp_path: Path, url: str, results: dict) -> tuple[Store, object]:
    spec = load_spec(_spec(tmp_path), trainer_schema())
    store = open_store(url)
    store.upsert_sweep(spec.name, str(spec.path), spec.text)
    runs = expand_runs(spec)
    assert {run.lane for run in runs} == {"screen"}  # the promoted lane is pending
    store.register_runs(runs, None)
    _record(store, runs, results)
    return store, spec


def _record(store: Store, runs: list, results: dict) -> None:
    for run in runs:
        bpb = results[run.params["jepa_weight"]][run.seed]
        result = {"val_bpb": bpb, "val_loss": bpb * 1.69, "artifact_bytes": 2000}
        store.record_result(run.run_id, RunOutcome(RunStatus.DONE, result=result))


def _expected_winners(results: dict, top: int, alpha: float) -> list[str]:
    """The rule computed here, apart from jepardy: one-sided Welch p < alpha, by delta."""
    control = list(results[0.0].values())
    passing = []
    for weight in (0.05, 0.10, 0.15):
        arm = list(results[weight].values())
        p = stats.ttest_ind(arm, control, equal_var=False, alternative="less").pvalue
        if p < alpha:
            passing.append((sum(arm) / 3 - sum(control) / 3, f"jepa_weight={weight!r}"))
    return [variant for _, variant in sorted(passing)[:top]]


def test_decided_once_from_the_store_and_read_back(tmp_path: Path, store_url: str) -> None:
    store, spec = _filled_store(tmp_path, store_url, RESULTS)
    made: list = []
    chain = advance(spec, store, made)
    assert len(made) == 1
    decision = read_decisions(store, "chain")["long"]
    assert decision.winners() == [("jepa", v) for v in _expected_winners(RESULTS, 1, 0.25)]
    assert decision.winners() == [("jepa", "jepa_weight=0.1")]
    by_variant = {c.variant: c for c in decision.candidates}
    assert by_variant["jepa_weight=0.05"].reason.startswith("passed, rank 2")
    assert by_variant["jepa_weight=0.15"].reason.startswith("fails p < 0.25: p = ")
    assert (
        not by_variant["jepa_weight=0.15"].selected and by_variant["jepa_weight=0.15"].rank is None
    )
    chosen = by_variant["jepa_weight=0.1"]
    assert chosen.n == 3 and chosen.control_n == 3 and len(chosen.run_ids) == 6
    assert chosen.ci_low < chosen.delta_bpb < chosen.ci_high < 0
    long = [run for run in expand_runs(chain.spec) if run.lane == "long"]
    assert [(run.arm, run.variant) for run in long] == [
        ("control", ""),
        ("jepa", "jepa_weight=0.1"),
    ]
    assert all(run.seed == 4 and run.params["wallclock_s"] == 600.0 for run in long)
    assert chain_lines(chain) == [
        "lane long: promoted 1 of 3 from lane screen (p < 0.25, top 1): jepa jepa_weight=0.1"
    ]

    # The screen's results change (a rerun, say): the recorded decision stands.
    flipped = {**RESULTS, 0.05: RESULTS[0.10], 0.10: RESULTS[0.05]}
    _record(store, [run for run in expand_runs(spec)], flipped)
    again: list = []
    chain = advance(spec, store, again)
    assert again == [] and read_decisions(store, "chain")["long"] == decision
    assert ("jepa", "jepa_weight=0.1") in {(r.arm, r.variant) for r in expand_runs(chain.spec)}

    # Other settings than those it was made under are refused, not decided again.
    other = load_spec(_spec(tmp_path, SPEC.replace("top = 1", "top = 2")), trainer_schema())
    with pytest.raises(UserError, match=r"lanes.long.promote: sweep chain recorded this"):
        recorded_chain(other, store)
    store.close()


def test_pending_until_the_source_lane_is_done(tmp_path: Path, store_url: str) -> None:
    store, spec = _filled_store(tmp_path, store_url, RESULTS)
    first = next(run for run in expand_runs(spec) if run.arm == "jepa")
    store.requeue(first.run_id)
    made: list = []
    chain = advance(spec, store, made)
    assert made == [] and read_decisions(store, "chain") == {}
    assert chain_lines(chain) == [
        "lane long: pending, decided (p < 0.25, top 1) when lane screen is done: "
        "11 of 12 runs done; then up to 2 runs"
    ]
    store.close()


def test_report_shows_the_chain_and_a_flip(tmp_path: Path) -> None:
    """Two weights promoted in screen order (0.10, then 0.05) that finish the other way
    round in the promoted lane: the report names the flip, and tau is -1."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    text = SPEC.replace("top = 1", "top = 2")
    store, _ = _filled_store(tmp_path, url, RESULTS)
    spec = load_spec(_spec(tmp_path, text), trainer_schema())
    chain = advance(spec, store, [])
    long = [run for run in expand_runs(chain.spec) if run.lane == "long"]
    store.register_runs(long, None)
    _record(store, long, {0.0: {4: 1.2000}, 0.10: {4: 1.1990}, 0.05: {4: 1.1950}})
    store.close()
    shown = rendered_text(run_report(tmp_path / "results.db", ReportRequest()).rendered, 240)
    assert "chain / promotion: lane screen -> lane long (p < 0.25, top 2)" in shown
    assert "selected: rank 1 (mean delta -0.0045)" in shown  # 0.10 in the screen
    assert "-0.0010, n=1: no test (n=1)" in shown  # ... and what it found in lane long
    assert "lane screen vs lane long: -1.00" in shown
    assert (
        "flip: jepa jepa_weight=0.05 vs jepa jepa_weight=0.1: +0.0032 in lane screen, "
        "-0.0040 in lane long" in shown
    )


def test_the_study_chain_passes_plan(cli) -> None:
    """experiments/study_chain.toml as shipped: the isolation lane's 12 runs now, the three
    promoted lanes pending, each saying why and how many runs it can come to."""
    root = Path(__file__).parent.parent
    shown = cli.run("plan", "experiments/study_chain.toml", "--db", "none.db", cwd=root)
    assert shown.returncode == 0, shown.stderr
    assert "study_chain: 12 runs" in shown.stdout
    assert (
        "lane screen: pending, decided (p < 0.25) when lane isolation is done: 0 of 12 runs "
        "done; then up to 8 runs"
    ) in shown.stdout
    lines = shown.stdout.splitlines()
    assert (
        "lane full: pending, promotes from lane screen (p < 0.25, top 2), itself pending; "
        "then up to 6 runs"
    ) in lines
    assert (
        "lane final: pending, promotes from lane full (delta < 0, top 1), itself pending; "
        "then up to 6 runs"
    ) in lines
