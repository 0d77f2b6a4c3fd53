"""A confidence per value: the local engine says how it found each value, grounding turns
that and how well the line was read into a probability, fitted so that it is calibrated."""

from __future__ import annotations

import json
import random
from typing import Any

from extraction import confidence
from extraction.contract import PrintedLine, Scene
from extraction.engine.document import fill_content
from extraction.engine.layout import Page, build_page
from extraction.engine.ocr import OcrLine
from extraction.grounding import ground, ground_pages

PROMPT = '{"invoice_no": "Invoice Number", "customer": "Customer", "total": "Total"}'


def _page(rows: list[tuple[str, float]]) -> tuple[Page, list[PrintedLine]]:
    """A page of lines one under the other, each with the confidence OCR gave it."""
    lines = [
        OcrLine(text, ((40, 40 + 50 * i), (600, 40 + 50 * i), (600, 70 + 50 * i),
                       (40, 70 + 50 * i)), score)
        for i, (text, score) in enumerate(rows)
    ]  # fmt: skip
    height = 60 + 50 * len(rows)
    printed = [
        PrintedLine(line.text, (40 / 700, (40 + 50 * i) / height, 600 / 700,
                                (70 + 50 * i) / height), line.confidence)
        for i, line in enumerate(lines)
    ]  # fmt: skip
    return build_page(lines, 700, height), printed


def _evidence(rows: list[tuple[str, float]], prompt: str = PROMPT) -> dict[str, dict[str, Any]]:
    page, printed = _page(rows)
    content, how = fill_content(page, prompt, Scene.GENERAL, True)
    return ground(json.loads(content), printed, how)


def test_every_value_the_engine_gives_has_a_probability_beside_its_evidence() -> None:
    rows = [("Invoice Number: INV-20415", 0.99), ("Customer: Harbour Hardware", 0.98)]
    evidence = _evidence([*rows, ("Total: 45.60", 0.99)])
    assert set(evidence) == {"invoice_no", "customer", "total"}
    for found in evidence.values():
        assert found["grounded"] is True
        assert 0.0 < found["confidence"] < 1.0


def test_a_value_from_a_badly_read_line_is_less_sure_than_the_same_value_read_cleanly() -> None:
    clean = _evidence([("Customer: Harbour Hardware", 0.99)])["customer"]["confidence"]
    smudged = _evidence([("Customer: Harbour Hardware", 0.55)])["customer"]["confidence"]
    assert smudged < clean - 0.05


def test_a_value_beside_a_label_read_with_slips_is_less_sure_than_beside_a_clean_one() -> None:
    clean = _evidence([("Customer: Harbour Hardware", 0.99)])["customer"]
    slipped = _evidence([("Custorner: Harbour Hardware", 0.99)])["customer"]
    assert slipped["grounded"]
    assert clean["grounded"]
    assert slipped["confidence"] < clean["confidence"] - 0.1


def test_values_of_another_model_have_no_confidence() -> None:
    printed = _page([("Total: 45.60", 0.99)])[1]
    assert ground({"total": "45.60"}, printed)["total"]["confidence"] is None
    # Page by page, each page's paths keep their confidence.
    pages = ground_pages(
        [{"total": "45.60"}], [PrintedLine("Total: 45.60", (0, 0, 1, 0.1), 0.99, page=1)],
        {"[0].total": "label_tail/amount"},
    )  # fmt: skip
    assert 0.0 < pages["[0].total"]["confidence"] < 1.0


def test_a_value_of_a_rule_no_labelled_set_exercises_has_no_confidence() -> None:
    # No dev set labels store names: the store's value is not given a made-up probability;
    # the same receipt's legal name is.
    rows = [("FRISCHKORB", 0.99), ("Frischkorb Handels GmbH", 0.99), ("Lindenallee 12", 0.99),
            ("20095 Hamburg", 0.99), ("SUMME EUR 15,29", 0.99)]  # fmt: skip
    evidence = _evidence(rows, '{"store": "Store name", "company": "Company legal name"}')
    assert evidence["store"]["grounded"]
    assert evidence["store"]["confidence"] is None
    assert 0.5 < evidence["company"]["confidence"] < 1


def test_the_fit_gives_probabilities_that_match_how_often_values_are_right() -> None:
    rng = random.Random(7)
    truth = {"rule=beside": 0.95, "rule=below": 0.7, "rule=guess": 0.4}
    samples = []
    for rule, rate in truth.items():
        for _ in range(400):
            samples.append(({"bias": 1.0, rule: 1.0}, rng.random() < rate))
    model = confidence.fit(samples, l2=0.01)
    for rule, rate in truth.items():
        assert abs(model.probability({"bias": 1.0, rule: 1.0}) - rate) < 0.05
    pairs = [(model.probability(named), right) for named, right in samples]
    assert confidence.expected_calibration_error(pairs)[0] < 0.03


def test_the_calibration_error_is_the_gap_between_confidence_and_share_right_per_bin() -> None:
    # Ten values at 0.9 of which 6 right, ten at 0.2 of which 2 right: |0.9-0.6|/2 + 0.
    pairs = [(0.9, i < 6) for i in range(10)] + [(0.2, i < 2) for i in range(10)]
    error, table = confidence.expected_calibration_error(pairs)
    assert abs(error - 0.15) < 1e-9
    assert [(round(low, 1), n) for low, _mean, _right, n in table] == [(0.2, 10), (0.9, 10)]
