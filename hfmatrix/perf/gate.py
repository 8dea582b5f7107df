"""The regression gate: asv's two-part rule on raw samples.

A change is flagged only when BOTH hold:
  1. the median ratio current / baseline exceeds ``factor`` (default 1.10; improvement: below
     1 / factor), and
  2. a two-sided Mann-Whitney U test on the raw samples gives p < ``alpha`` (default 0.002).

Like asv's ``statistics.is_different``, the U test is only trusted when the sample sizes can reach
``alpha`` at all: the smallest attainable p is 1 / C(n + m, min(n, m)); below that the verdict is
"insufficient-samples" (never a silent pass or fail).

The suite applies this rule to calibrated samples (hfmatrix.perf.calibrated: each round's fastest model
call over a fixed workload's fastest call), re-measures an alarm, and says ``inconclusive`` when the
samples are too noisy or the alarm does not repeat.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

FACTOR = 1.10
ALPHA = 0.002

REGRESSION = "regression"
IMPROVEMENT = "improvement"
UNCHANGED = "unchanged"
INSUFFICIENT = "insufficient-samples"
NO_BASELINE = "no-baseline"
INCOMPARABLE = "incomparable"
#: the measurement could not decide: too noisy (hfmatrix.perf.calibrated's noise bound), or an alarm that
#: the re-measure did not confirm. Neither a pass nor a failure: a typed skip of the same name.
INCONCLUSIVE = "inconclusive"
VERDICTS = (REGRESSION, IMPROVEMENT, UNCHANGED, INSUFFICIENT, NO_BASELINE, INCOMPARABLE, INCONCLUSIVE)


@dataclass(frozen=True)
class Comparison:
    verdict: str
    ratio: float | None = None          # median(current) / median(baseline)
    p_value: float | None = None        # two-sided Mann-Whitney U
    baseline_median: float | None = None
    current_median: float | None = None
    n_baseline: int = 0
    n_current: int = 0
    factor: float = FACTOR
    alpha: float = ALPHA
    reason: str = ""

    @property
    def flagged(self) -> bool:
        return self.verdict == REGRESSION

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self, unit_scale: float = 1e3, unit: str = "ms") -> str:
        if self.ratio is None:
            return f"{self.verdict}: {self.reason}"
        p = "n/a" if self.p_value is None else f"{self.p_value:.2g}"
        return (f"{self.verdict}: median {self.current_median * unit_scale:.4g} {unit} vs baseline "
                f"{self.baseline_median * unit_scale:.4g} {unit} (×{self.ratio:.3f}, threshold ×{self.factor:.2f}); "
                f"Mann-Whitney p={p} (alpha {self.alpha:g}); n={self.n_current} vs {self.n_baseline}"
                + (f"; {self.reason}" if self.reason else ""))


def min_attainable_p(n: int, m: int) -> float:
    """Smallest two-sided-relevant p a rank test can give with these sizes (asv's p_min)."""
    if not (n and m):
        return 1.0
    k = min(n, m)  # 1 / C(n + m, k), in logs: the binomial overflows a float from a few hundred samples
    return math.exp(-(math.lgamma(n + m + 1) - math.lgamma(k + 1) - math.lgamma(n + m - k + 1)))


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import mannwhitneyu
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(np.concatenate([a, b])) == 0:  # all equal: no evidence of any difference
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def compare(baseline: Sequence[float], current: Sequence[float], factor: float = FACTOR,
            alpha: float = ALPHA) -> Comparison:
    """asv's rule: flagged only if the median ratio passes the factor AND the U test is significant."""
    if factor <= 1.0:
        raise ValueError(f"factor must be > 1, got {factor}")
    base = [float(x) for x in baseline if x == x]   # drop NaN
    cur = [float(x) for x in current if x == x]
    common = dict(n_baseline=len(base), n_current=len(cur), factor=factor, alpha=alpha)
    if not base:
        return Comparison(NO_BASELINE, reason="no baseline samples", **common)
    if not cur:
        return Comparison(INCOMPARABLE, reason="no current samples", **common)
    mb, mc = float(np.median(base)), float(np.median(cur))
    ratio = mc / mb if mb > 0 else math.inf
    common.update(baseline_median=mb, current_median=mc, ratio=ratio)
    p_min = min_attainable_p(len(base), len(cur))
    if p_min >= alpha:
        return Comparison(INSUFFICIENT, reason=f"{len(cur)} vs {len(base)} samples cannot reach p < {alpha:g} "
                                               f"(smallest attainable p {p_min:.2g})", **common)
    p = mann_whitney_p(base, cur)
    if ratio > factor and p < alpha:
        verdict = REGRESSION
    elif ratio < 1.0 / factor and p < alpha:
        verdict = IMPROVEMENT
    else:
        verdict = UNCHANGED
    return Comparison(verdict, p_value=p, **common)
