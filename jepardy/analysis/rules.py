"""Decision rules as settings: the level, the margin and the sides of a test, and the two
rules the challenge decides by.

A `Rule` is what a verdict was decided under; every verdict that reports, compares against
a leader, plans or promotes says which rule it used (`Rule.describe`). The challenge has two:

- the record rule (study.md): a new record beats the best by at least 0.005 nats at
  p < 0.01, one-sided;
- the leaderboard rule (openai/parameter-golf pull 1902, worked by hand in 1967): a row is
  placed when a one-sided Welch test against the previous leader gives p < 0.25, with
  independent reproductions of one configuration pooled.

Sides: "one" tests the direction the rule asks about (the arm lower), and its other side
(the arm higher) apart. "two" gives both directions the one two-sided p, twice the smaller
one-sided p (capped at 1): `scipy.stats.ttest_ind(equal_var=False)`'s own p, whichever way
the arm moved; the sign of the difference then says better or worse. The margin test asks
a one-way question (better by more than the margin), so two-sided it is read at alpha / 2:
its p doubled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jepardy.errors import UserError

if TYPE_CHECKING:  # numpy is imported where used: the CLI reads this module's defaults
    import numpy as np

# The record rule's figures, the defaults of `jepardy report`.
RECORD_MARGIN_NATS = 0.005
RECORD_ALPHA = 0.01
LEADERBOARD_ALPHA = 0.25
SIDES = ("one", "two")


@dataclass(frozen=True)
class Rule:
    """A decision rule: significant when the test's p < `alpha`; an improvement counts only
    beyond `margin_nats` (nats per token; 0: any improvement); `sided` "one" or "two"."""

    name: str
    alpha: float = RECORD_ALPHA
    margin_nats: float = RECORD_MARGIN_NATS
    sided: str = "one"

    def describe(self) -> str:
        """One line, e.g. "record rule: 0.005 nats at p < 0.01 (one-sided Welch)"."""
        need = f"{self.margin_nats:g} nats at " if self.margin_nats > 0 else ""
        return f"{self.name} rule: {need}p < {self.alpha:g} ({self.sided}-sided Welch)"

    def sided_p(self, p_one_sided: np.ndarray) -> np.ndarray:
        """A one-way test's p as this rule reads it (doubled, capped at 1, when two-sided):
        the margin test's."""
        import numpy as np

        p = np.asarray(p_one_sided, dtype=float)
        return np.minimum(1.0, 2.0 * p) if self.sided == "two" else p

    def sided_pair(
        self, p_less: np.ndarray, p_greater: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The p-values of "the arm is lower" and "the arm is higher" as this rule reads
        them: one-sided, as they are; two-sided, both the two-sided p (twice the smaller,
        capped at 1), so a verdict needs the difference's sign beside it."""
        import numpy as np

        less, greater = np.asarray(p_less, dtype=float), np.asarray(p_greater, dtype=float)
        if self.sided != "two":
            return less, greater
        both = np.minimum(1.0, 2.0 * np.fmin(less, greater))
        return both, both.copy()


RECORD = Rule("record", alpha=RECORD_ALPHA, margin_nats=RECORD_MARGIN_NATS)
LEADERBOARD = Rule("leaderboard", alpha=LEADERBOARD_ALPHA, margin_nats=0.0)


def make_rule(
    alpha: float = RECORD_ALPHA,
    margin_nats: float = RECORD_MARGIN_NATS,
    sided: str = "one",
    name: str = "report",
) -> Rule:
    """A Rule from settings (`--alpha`, `--margin`, `--sided`), each checked: a bad one is a
    UserError naming the setting and its value. The record rule's settings keep its name."""
    if not (math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise UserError(f"--alpha {alpha}: a significance level must be between 0 and 1")
    if not (math.isfinite(margin_nats) and margin_nats >= 0.0):
        raise UserError(f"--margin {margin_nats}: a margin in nats must be >= 0")
    if sided not in SIDES:
        raise UserError(f"--sided {sided!r}; allowed: {', '.join(SIDES)}")
    if (alpha, margin_nats, sided) == (RECORD.alpha, RECORD.margin_nats, RECORD.sided):
        return RECORD
    return Rule(name, alpha=alpha, margin_nats=margin_nats, sided=sided)


def margin_in_metric(
    bpb_over_loss: float | np.ndarray, margin_nats: float = RECORD_MARGIN_NATS
) -> float | np.ndarray:
    """A margin in nats per token in bpb units, given a run set's val_bpb / val_loss ratio.

    val_bpb = val_loss / ln 2 * tokens / bytes, so the ratio converts nats per token to bits
    per byte for that data: 0.005 nats is about 0.00295 bpb with sp1024 (study.md).
    """
    return margin_nats * bpb_over_loss
