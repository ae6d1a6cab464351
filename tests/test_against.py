"""`jepardy report --against`: records ingested from their own logs and submission.json
(tests/fixtures/records, copied from openai/parameter-golf) reproduce the p-values the
maintainers published under the leaderboard rule (one-sided Welch, p < 0.25).

Published in openai/parameter-golf pull 1902 (commit bea92e7, README leaderboard rows):
- #1529 (2026-04-11_ImprovedParallelResiduals_CUTLASS_EVT, from the pull's head) "corrected
  3-seed mean ... (p=0.001 vs #1514)";
- #1514 (2026-04-09_A2_Muon097_3Seed) "3-seed sweep beats #1493 (p=0.020)", #1493 being
  2026-04-09_SP8192_3LayerRecur_ParResid_QK525_LegalTTT.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jepardy.cli.app import app

RECORDS = Path(__file__).parent / "fixtures" / "records"
PR1493 = RECORDS / "2026-04-09_SP8192_3LayerRecur_ParResid_QK525_LegalTTT"
PR1514 = RECORDS / "2026-04-09_A2_Muon097_3Seed"
PR1529 = RECORDS / "2026-04-11_ImprovedParallelResiduals_CUTLASS_EVT"
FAKE = RECORDS / "2026-03-20_Fake Record"


def _invoke(*args: str | Path) -> str:
    out = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert out.exit_code == 0, out.output
    return out.output


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("against") / "results.db"
    _invoke("ingest", PR1493, PR1514, PR1529, FAKE, "--db", path)
    return path


def _rows(db: Path, arm: Path, *against: Path) -> dict[str, dict]:
    """The json report of `arm`'s record against the pooled `against` folders, by rule."""
    args = ["report", "--db", db, "--sweep", f"ingested:{arm.name}", "--format", "json"]
    text = _invoke(*args, *(x for a in against for x in ("--against", a)))
    return {row["rule"].split(" rule")[0]: row for row in json.loads(text)["against"]}


@pytest.mark.parametrize(
    ("arm", "leader", "published"),
    [(PR1529, PR1514, "0.001"), (PR1514, PR1493, "0.020")],
    ids=["1529-over-1514", "1514-over-1493"],
)
def test_published_leaderboard_p_values(db: Path, arm: Path, leader: Path, published: str) -> None:
    rows = _rows(db, arm, leader)
    board = rows["leaderboard"]
    # The p-value to the precision the maintainers published it.
    assert f"{board['p']:.3f}" == published
    assert board["verdict"] == "beats the leader" and board["leader_n"] == 3
    assert board["flags"].startswith("other seeds")  # tested anyway: Welch is unpaired


def test_record_rule_beside_the_leaderboard_rule(db: Path) -> None:
    rows = _rows(db, PR1529, PR1514)
    assert rows["record"]["rule"] == "record rule: 0.005 nats at p < 0.01 (one-sided Welch)"
    # #1529 beats #1514 by 0.0104 nats; #1514 beats #1493 by only 0.0030 nats.
    assert rows["record"]["delta_loss_nats"] == pytest.approx(-0.0104, abs=5e-5)
    assert rows["record"]["verdict"] == "beats the leader by 0.005 nats"
    assert _rows(db, PR1514, PR1493)["record"]["verdict"] == "not significant"


def test_reproductions_are_pooled(db: Path) -> None:
    rows = _rows(db, PR1529, PR1514, PR1493)
    assert rows["leaderboard"]["leader_n"] == 6
    assert rows["leaderboard"]["leader"] == (f"ingested:{PR1514.name}, ingested:{PR1493.name}")


def test_unmatched_comparisons_are_flagged_without_verdict(db: Path) -> None:
    rows = _rows(db, FAKE, PR1514)
    assert rows["leaderboard"]["verdict"] == "unmatched: no verdict"
    assert "other metric" in rows["leaderboard"]["flags"]


def test_table_names_each_rule_and_flag(db: Path) -> None:
    text = _invoke("report", "--db", db, "--sweep", f"ingested:{PR1529.name}", "--against", PR1514)
    assert f"against ingested:{PR1514.name} (pooled: 3 runs)" in text
    assert "leaderboard rule: p < 0.25 (one-sided Welch)" in text
    assert "flag: " in text and "other seeds (42, 1337, 2024 vs 0, 42, 1234)" in text


def test_a_folder_not_ingested_is_one_line(db: Path, tmp_path: Path, cli) -> None:
    folder = tmp_path / "2026-05-01_NotIngested"
    folder.mkdir()
    line = cli.refused("report", "--db", db, "--against", folder, cwd=tmp_path)
    assert line == (
        f"error: report --against {folder}: {db} has no sweep 'ingested:2026-05-01_NotIngested';"
        f" ingest the folder first: jepardy ingest {folder}"
    )


def test_a_rule_asked_for_joins_the_two(db: Path) -> None:
    args = ["report", "--db", db, "--sweep", f"ingested:{PR1514.name}", "--format", "json"]
    text = _invoke(*args, "--against", PR1493, "--alpha", "0.05", "--margin", "0")
    rows = {row["rule"]: row for row in json.loads(text)["against"]}
    asked = rows["report rule: p < 0.05 (one-sided Welch)"]
    assert asked["p"] == rows["leaderboard rule: p < 0.25 (one-sided Welch)"]["p"]
    assert asked["verdict"] == "beats the leader" and len(rows) == 3


def _narrow(*args: str | Path) -> str:
    """The table at 80 columns, every line checked to fit."""
    out = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
    return out.stdout


def _hidden(text: str) -> str:
    """The note naming the columns a narrow table left out ("" when none)."""
    flat = " ".join(text.split())
    return flat.split("hidden: ")[1].split(";")[0] if "hidden: " in flat else ""


def test_a_narrow_terminal_keeps_the_answer(db: Path) -> None:
    """The verdict, its rule, the difference and p are the answer: an 80-column table keeps
    them; the sweep and lane every arm shares are said once, in the title."""
    args = ["report", "--db", db, "--sweep", f"ingested:{PR1529.name}", "--against", PR1514]
    text = _narrow(*args)
    assert f"ingested:{PR1529.name} / logs against" in " ".join(text.split())
    rows = [line.split() for line in text.splitlines() if line.startswith("train ")]
    assert rows == [
        ["train", "-0.0040", "leaderboard", "0.0009", "beats", "the", "leader"],
        ["train", "-0.0040", "record", "0.0081", "beats", "the", "leader", "by", "0.005", "nats"],
    ]
    assert not {"verdict", "rule", "delta_bpb", "p"} & set(_hidden(text).split(", "))


def test_long_arm_labels_fold_and_every_verdict_stays(db: Path) -> None:
    text = _narrow("report", "--db", db, "--against", PR1514)
    assert not {"verdict", "rule", "delta_bpb", "p", "arm"} & set(_hidden(text).split(", "))
    # Three arms against the leader by two rules: six rows, each ending in its verdict.
    verdicts = ("unmatched: no verdict", "significantly worse", "not significant")
    verdicts += ("beats the leader", "beats the leader by 0.005 nats")
    rows = [line.rstrip() for line in text.splitlines() if " leaderboard " in line]
    rows += [line.rstrip() for line in text.splitlines() if " record " in line]
    assert len(rows) == 6 and all(row.endswith(verdicts) for row in rows), rows
    assert "ingested:2026-04" in rows[0]  # a label too long for its column is folded


def test_two_sided_p_is_the_two_sided_welch_p(db: Path) -> None:
    """#1514 is worse than #1529: two-sided, its p is twice the smaller one-sided p (the
    Welch p scipy gives), not 1, and the verdict says worse."""
    args = ["report", "--db", db, "--sweep", f"ingested:{PR1514.name}", "--format", "json"]
    text = _invoke(*args, "--against", PR1529, "--alpha", "0.05", "--margin", "0", "--sided", "two")
    rows = {row["rule"].split(" rule")[0]: row for row in json.loads(text)["against"]}
    board, asked = rows["leaderboard"], rows["report"]
    two_sided = 2 * min(board["p"], board["p_worse"])
    assert board["p"] > 0.99 and asked["p"] == pytest.approx(two_sided)
    assert asked["p_worse"] == pytest.approx(two_sided)
    assert asked["verdict"] == "significantly worse"
