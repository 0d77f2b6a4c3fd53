"""How likely a value is right: a probability, calibrated on labelled documents.

The local engine says how it found each value (``ModelResult.how``: the rule, such as a
value beside its label, under it, a printed date range, the payable total, the issuer's
name in the header, and the value's type). Grounding then knows how well OCR read the
line it came from and how closely the value matches it. A logistic model over those
features turns them into the probability that the value is the one a reader would give:
of values given 0.9, about nine in ten are right.

Its weights (``calibration.json`` beside this file) are fitted on labelled receipts, forms
and advertising orders; the benchmark also fits it on half of each set by a fixed hash and
checks it on the other half::

    python -m tests.benchmarks.local_engine --set all --fit-calibration

A remote model's values have no rule to read, and a value found by a rule the labelled
sets never exercise (a store name: none labels one) has no calibration: their confidence
is ``None``, which a user routes to review like a low one.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")

# OCR confidences are clamped into this range before their logit is taken.
_OCR_FLOOR, _OCR_CEILING = 0.5, 0.999


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _centred_logit(p: float) -> float:
    """The logit of an OCR confidence, clamped, less that of a clean read."""
    return _logit(min(max(p, _OCR_FLOOR), _OCR_CEILING)) - _logit(_OCR_CEILING)


def features(
    how: str,
    *,
    ocr_confidence: float | None,
    match: float,
    grounded: bool,
    value: object,
    page_confidence: float | None = None,
) -> dict[str, float]:
    """The named features of one value (missing ones are 0).

    ``how`` is ``rule/type`` as the engine gives it ("label_right/company", "range/date"),
    the rule with flags ("label_right+colon+fuzzy/text").
    """
    rule, _, kind = how.partition("/")
    rule, *flags = rule.split("+")
    found = {"bias": 1.0, f"rule={rule}": 1.0, f"type={kind}": 1.0}
    found.update((f"flag={flag}", 1.0) for flag in flags)
    ocr = min(max(ocr_confidence if ocr_confidence is not None else 0.0, _OCR_FLOOR), _OCR_CEILING)
    # Centred on a clean read, so a perfect line adds nothing.
    found["ocr"] = _logit(ocr) - _logit(_OCR_CEILING)
    # How well the whole page was read (a noisy fax, a faded print): the mean of its lines'.
    page = min(
        max(page_confidence if page_confidence is not None else 1.0, _OCR_FLOOR), _OCR_CEILING
    )
    found["page_ocr"] = _logit(page) - _logit(_OCR_CEILING)
    found["mismatch"] = 1.0 - match
    found["ungrounded"] = 0.0 if grounded else 1.0
    letters = re.sub(r"\W", "", str(value))
    found["short"] = 1.0 if len(letters) <= 3 else 0.0
    words = len(str(value).split())
    found["words"] = 1.0 if words >= 3 else 0.0
    found["long"] = 1.0 if words > 6 else 0.0
    return found


@dataclass(frozen=True, slots=True)
class Calibration:
    """A logistic model: probability = sigmoid(sum of weight x feature)."""

    weights: Mapping[str, float]

    def knows(self, named: Mapping[str, float]) -> bool:
        """Whether the fit saw values found by this rule: a rule the labelled sets never
        exercise (a store name: no set labels one) has no calibrated probability."""
        return all(name in self.weights for name in named if name.startswith("rule="))

    def probability(self, named: Mapping[str, float]) -> float:
        z = sum(self.weights.get(name, 0.0) * value for name, value in named.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        data = json.loads(path.read_text())
        return cls({str(k): float(v) for k, v in data["weights"].items()})


@functools.cache
def calibration() -> Calibration:
    """The shipped calibration, read once per process."""
    return Calibration.load()


def fit(samples: Sequence[tuple[Mapping[str, float], bool]], *, l2: float = 1.0) -> Calibration:
    """Weights that make ``probability`` fit ``samples`` (features, right or not):
    logistic regression with an L2 penalty on every weight but the bias, by Newton's
    method (a few hundred samples, a few dozen features)."""
    import numpy as np  # only to fit, never to predict

    names = sorted({name for named, _ in samples for name in named})
    x = np.array([[named.get(n, 0.0) for n in names] for named, _ in samples])
    y = np.array([1.0 if right else 0.0 for _, right in samples])
    penalty = np.diag([0.0 if n == "bias" else l2 for n in names])
    w = np.zeros(len(names))
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
        gradient = x.T @ (p - y) + penalty @ w
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(len(names))
        change = np.linalg.solve(hessian, gradient)
        w -= change
        if float(np.abs(change).max()) < 1e-7:
            break
    return Calibration({n: round(float(v), 4) for n, v in zip(names, w, strict=True)})


def expected_calibration_error(
    pairs: Sequence[tuple[float, bool]], bins: int = 10
) -> tuple[float, list[tuple[float, float, float, int]]]:
    """ECE of (confidence, right) pairs over ``bins`` equal-width bins, and the reliability
    table: per non-empty bin its lower edge, mean confidence, share right and count."""
    table = []
    total = 0.0
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        inside = [(p, r) for p, r in pairs if low <= p < high or (index == bins - 1 and p == 1.0)]
        if not inside:
            continue
        mean = sum(p for p, _ in inside) / len(inside)
        right = sum(r for _, r in inside) / len(inside)
        total += len(inside) * abs(mean - right)
        table.append((low, mean, right, len(inside)))
    return (total / len(pairs) if pairs else 0.0), table
