"""Finding printed labels ("Invoice No:", "TOTAL", "DATE") on a page by fuzzy text match.

A label may share its fragment with the value ("Date: 12/03/2024"), span two fragments
("Invoice" "No."), or wrap onto the next line (form questions). Each way is tried and
scored by string similarity, so OCR slips ("Bi11 Date", "TOTL") still match.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from extraction.engine.layout import Fragment, Page
from extraction.engine.values import fold_accents

# Below this similarity a fragment is not the label; chosen so "TOTL" matches "total" and
# "TAX" does not match "TAXI".
MIN_SIMILARITY = 0.8

_SQUASH = re.compile(r"[^0-9a-z\u00c0-\u024f\u0400-\u04ff\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]+")


def squash(text: str) -> str:
    """Lower case, without accents, spaces or punctuation, for comparing labels."""
    return _SQUASH.sub("", fold_accents(text).lower())


@dataclass(frozen=True, slots=True)
class LabelHit:
    """Where a label was found: the fragments it covers, the text after it, how well it matched."""

    fragments: tuple[Fragment, ...]
    tail: str
    score: float
    variant: int
    colon: bool = False

    @property
    def last(self) -> Fragment:
        return self.fragments[-1]

    @property
    def first(self) -> Fragment:
        return self.fragments[0]


def similarity(a: str, b: str) -> float:
    """Similarity of two squashed strings; short labels must match exactly."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    if min(len(a), len(b)) <= 3:
        return 0.0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < MIN_SIMILARITY or matcher.quick_ratio() < MIN_SIMILARITY:
        return 0.0
    return matcher.ratio()


def _split_points(text: str, variants: list[str]) -> list[tuple[str, str, bool]]:
    """Ways to read ``text`` as label + rest: at a colon, after a matching prefix, or whole.

    The flag says the label ended at a colon, the surest sign that a value follows.
    """
    splits: list[tuple[str, str, bool]] = [(text, "", text.rstrip().endswith((":", "\uff1a")))]
    colon = re.search(r"[:\uff1a]", text)
    if colon:
        splits.append((text[: colon.start()], text[colon.end() :], True))
    squashed = squash(text)
    for variant in variants:
        target = squash(variant)
        if not target or len(target) >= len(squashed) or not squashed.startswith(target):
            continue
        # Walk the original text until the squashed prefix is consumed.
        consumed = 0
        for position, char in enumerate(text):
            if squash(char):
                consumed += 1
            if consumed == len(target):
                rest = text[position + 1 :]
                # A prefix match must end at a word boundary ("NO" is not the start of "NOTE").
                if not rest[:1].isalnum() or not target.isascii():
                    splits.append((text[: position + 1], rest, False))
                break
    return splits


def find_labels(
    page: Page,
    variants: list[str],
    *,
    min_similarity: float = MIN_SIMILARITY,
    exclude: frozenset[int] = frozenset(),
) -> list[LabelHit]:
    """Every place ``page`` prints one of ``variants``, best match first then reading order."""
    squashed_variants = [squash(v) for v in variants]
    hits: list[LabelHit] = []
    for row in page.rows:
        fragments = row.fragments
        for start in range(len(fragments)):
            if fragments[start].index in exclude:
                continue
            groups: list[tuple[Fragment, ...]] = [(fragments[start],)]
            if start + 1 < len(fragments):
                groups.append((fragments[start], fragments[start + 1]))
            # Wrapped labels: the fragment plus the one right under it.
            under = page.below(fragments[start], max_gap=0.8)
            if (
                len(under) == 1
                and abs(under[0].left - fragments[start].left) < 2 * page.line_height
            ):
                groups.append((fragments[start], under[0]))
            for group in groups:
                text = " ".join(f.text for f in group)
                best: tuple[float, int, str, bool] | None = None
                for head, tail, colon in _split_points(text, variants):
                    squashed_head = squash(head)
                    for rank, target in enumerate(squashed_variants):
                        score = similarity(squashed_head, target)
                        if score >= min_similarity and (
                            best is None or (score, -rank) > (best[0], -best[1])
                        ):
                            best = (score, rank, tail, colon)
                if best is not None:
                    hits.append(LabelHit(group, best[2].strip(), best[0], best[1], best[3]))
    hits.sort(key=lambda h: (-h.score, h.variant, page.row_of[h.first.index].index, h.first.left))
    return hits
