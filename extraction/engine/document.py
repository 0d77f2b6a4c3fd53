"""The embedded engine's entry point: image + prompt -> content, like a vision model would.

``extract_document`` runs OCR, lays the fragments out in rows, reads the schema from the
prompt and fills it: a key's value is found next to (right of, or under) its printed label,
checked against the type the key expects; keys nobody labels on receipts (issuer name and
address, the payable total, the date) fall back to layout rules. Keys with nothing that
fits are ``null``. A prompt without a schema gets the recognised text in reading order.
``extract_pages`` does the same for a document of several pages, read as one tall page.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image, UnidentifiedImageError

from core.errors import CorruptImage
from extraction.contract import DocumentPage, PageSource, PrintedLine, Scene, Usage
from extraction.engine import merchant, totals
from extraction.engine.labels import LabelHit, find_labels
from extraction.engine.layout import Fragment, Page, PageText, build_pages
from extraction.engine.ocr import OcrLine, Reading, TextRecognizer
from extraction.engine.tables import Column, extract_table
from extraction.engine.values import (
    ValueType,
    amount_value,
    detect_type,
    find_amounts,
    find_date,
    find_date_ranges,
    find_dates,
    find_email,
    find_identifier,
    find_percent,
    find_phone,
    find_quantity,
    find_time,
    find_url,
)
from extraction.engine.vocabulary import (
    Concept,
    Qualifier,
    asks_for_a_date,
    column_role,
    date_role,
    label_variants,
    match_concept,
    qualifier_named,
    subject_words,
    total_qualifier,
)
from extraction.schema import (
    ArraySpec,
    FieldSpec,
    ObjectSpec,
    Spec,
    empty_value,
    parse_schema,
)

_BUYER_WORDS = re.compile(
    r"buyer|customer|bill(?:ed)?\s*to|client|purchaser|sold\s*to|ship\s*to|consignee|"
    r"购买方|购方|客户|买方|付款方",
    re.IGNORECASE,
)


# Keys that ask for a store or chain as a reader names it (the brand), not a legal name;
# a merchant, dealer or market too, unless the key also asks for a company, firm or legal
# name (SROIE's "Company / merchant name" wants the legal name).
_STORE_WORDS = re.compile(
    r"(?<![^\W_])(?:store|shop|chain|brand|outlet|retailer|laden|geschaft|geschäft|filiale|"
    r"magasin|enseigne|boutique|tienda|comercio|negozio|loja|winkel|winkelnaam|商店|门店|品牌)"
    r"(?![^\W_])"
    r"|^(?![\s\S]*(?<![^\W_])(?:compan(?:y|ies)|firm|firma|legal|registered|corporate|"
    r"unternehmen|gesellschaft|rechtlich\w*|soci[ée]t[ée]|raison|empresa|sociedad|raz[óo]n|"
    r"azienda|societ[àa]|ragione|bedrijf|onderneming|vennootschap)(?![^\W_]))"
    r"[\s\S]*?(?<![^\W_])(?:merchant|h(?:ä|a|ae)ndler|gesch(?:ä|a|ae)fts?|markt|supermarkt|"
    r"supermarket|supermarch[ée]|commer[cç]ant|marchand|comerciante|esercente|negoziante|"
    r"winkelier|handelaar)(?![^\W_])",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class EngineResult:
    """What the engine returns: the content string, its token usage, and what it saw."""

    content: str
    usage: Usage
    text: str
    fragments: int
    seconds: float
    printed: tuple[PrintedLine, ...] = ()
    # How each page was read, in order (one entry for a single image).
    page_sources: tuple[PageSource, ...] = ()
    # How each value was found, by its path (``SchemaFiller.how``): what its confidence
    # is reckoned from.
    how: Mapping[str, str] = dataclasses.field(default_factory=dict)


# --- token usage -------------------------------------------------------------------------

_CHARS_PER_TOKEN = 4
_IMAGE_BASE_TOKENS = 85
_IMAGE_TILE_TOKENS = 170


def image_tokens(width: int, height: int) -> int:
    """Tokens an image costs, by OpenAI's high-detail tile rule.

    Fit within 2048x2048, scale the shorter side down to 768, then 170 tokens per 512 px
    tile plus 85.
    """
    if width <= 0 or height <= 0:
        return _IMAGE_BASE_TOKENS
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return _IMAGE_BASE_TOKENS + _IMAGE_TILE_TOKENS * tiles


def text_tokens(text: str) -> int:
    """About one token per four characters, at least one for non-empty text."""
    return max(1, math.ceil(len(text) / _CHARS_PER_TOKEN)) if text else 0


def estimate_usage(prompt: str, width: int, height: int, content: str) -> Usage:
    """Token usage as an OpenAI-style vision model would bill this call.

    prompt tokens = ceil(len(prompt) / 4) + image tokens (tile rule, see ``image_tokens``);
    completion tokens = ceil(len(content) / 4). The local engine has no tokenizer; this
    keeps credits and usage reports comparable across providers.
    """
    return estimate_pages_usage(prompt, [(width, height)], content)


def estimate_pages_usage(prompt: str, sizes: Iterable[tuple[int, int]], content: str) -> Usage:
    """``estimate_usage`` for a document: the prompt once, each page's image tokens."""
    return Usage(
        prompt_tokens=text_tokens(prompt) + sum(image_tokens(w, h) for w, h in sizes),
        completion_tokens=text_tokens(content),
    )


# --- schema filling ----------------------------------------------------------------------


def _clean(text: str) -> str:
    return text.strip(" \t:\uff1a;,-_=|#*.>").strip()


def _typed_value(text: str, value_type: ValueType) -> str | None:
    """The part of ``text`` that is a value of ``value_type``, or ``None``."""
    cleaned = _clean(text)
    if not cleaned:
        return None
    if value_type is ValueType.DATE:
        return find_date(cleaned, labelled=True)
    if value_type is ValueType.TIME:
        return find_time(cleaned)
    if value_type is ValueType.AMOUNT:
        amounts = find_amounts(cleaned) or find_amounts(cleaned, decimals_only=False)
        return amounts[-1] if amounts else None
    if value_type is ValueType.QUANTITY:
        return find_quantity(cleaned)
    if value_type is ValueType.PERCENT:
        return find_percent(cleaned)
    if value_type is ValueType.PHONE:
        return find_phone(cleaned)
    if value_type is ValueType.EMAIL:
        return find_email(cleaned)
    if value_type is ValueType.URL:
        return find_url(cleaned)
    if value_type is ValueType.IDENTIFIER:
        if not re.search(r"\d", cleaned) and len(cleaned.split()) > 1:
            return None  # words without a digit: a heading or another label, not a number
        if len(cleaned) <= 30 and len(cleaned.split()) <= 3:
            return cleaned
        return find_identifier(cleaned)
    if not re.search(r"[^\W_]", cleaned):
        return None
    return cleaned


# Net figures, after commission or discount: never the gross total.
_NET_FIGURES = re.compile(
    f"{qualifier_named('net').printed.pattern}|{qualifier_named('commission').printed.pattern}",
    re.IGNORECASE,
)
# Words of a key asking for a total ("Gross total amount"), in the labels' languages.
_TOTAL_WORDS = re.compile(r"total|summe|gesamt|totale|totaal|合计|总计", re.IGNORECASE)
# Rows a column is read down to find its totals row.
_COLUMN_ROWS = 12

# Text this many line heights right of a label is in the next box of a grid, not beside it.
_BOX_GAP = 5

_FREE_TEXT = (ValueType.TEXT, ValueType.PERSON, ValueType.COMPANY, ValueType.ADDRESS)


@dataclass(frozen=True, slots=True)
class _Field:
    spec: FieldSpec
    value_type: ValueType
    concept: Concept | None
    variants: list[str]
    buyer: bool


class SchemaFiller:
    """Fills one schema from one page. Not shared between pages or threads."""

    def __init__(self, page: Page, scene: Scene) -> None:
        self.page = page
        self.scene = scene
        self._claimed: set[int] = set()
        self._label_fragments: set[int] = set()
        self._label_patterns: list[re.Pattern[str]] = []
        # How each value was found, by its path ("total", "items[0].name"): the rule that
        # gave it (see ``_find_value``) and the value's type, for its confidence.
        self.how: dict[str, str] = {}
        self._how = ""

    def fill(self, spec: Spec) -> Any:
        """The output value for ``spec``: a dict, list, string or ``None``."""
        self._label_fragments = self._all_label_fragments(spec, "")
        self._label_patterns = [
            re.compile(r"[\s_:\uff1a-]+" + r"\W*".join(map(re.escape, words)) + r"\W*$", re.I)
            for words in (re.findall(r"[^\W_]+", d) for d in self._descriptions(spec))
            if len("".join(words)) >= 4
        ]
        return self._fill(spec, "", "")

    def _fill(self, spec: Spec, context: str, path: str) -> Any:
        if isinstance(spec, ObjectSpec):
            inner = f"{context} {spec.description if spec.key else ''}".strip()
            return {
                child.key: self._fill(child, inner, f"{path}.{child.key}" if path else child.key)
                for child in spec.fields
            }
        if isinstance(spec, ArraySpec):
            return self._fill_array(spec, context, path)
        field = self._describe(spec, context)
        value = self._fill_field(field)
        if value is not None:
            self.how[path] = f"{self._how}/{field.value_type.value}"
        return value

    def _describe(self, spec: FieldSpec, context: str) -> _Field:
        words = f"{context} {spec.description}".strip()
        value_type = detect_type(spec.key, spec.description, spec.json_type)
        if value_type is ValueType.TEXT and context:
            value_type = detect_type("", words)
        if spec.format in ("date", "date-time") or (
            value_type is ValueType.TEXT and asks_for_a_date(f"{spec.key} {words}")
        ):
            value_type = ValueType.DATE
        elif spec.format == "email":
            value_type = ValueType.EMAIL
        concept = match_concept(spec.key, words, self.scene, value_type)
        if concept is not None and concept.value_type is not None and value_type is ValueType.TEXT:
            value_type = concept.value_type
        variants = label_variants(spec.key, spec.description, concept)
        return _Field(spec, value_type, concept, variants, bool(_BUYER_WORDS.search(words)))

    def _descriptions(self, spec: Spec) -> set[str]:
        if isinstance(spec, ObjectSpec):
            return set().union(*(self._descriptions(c) for c in spec.fields))
        return {spec.description} if isinstance(spec, FieldSpec) else set()

    def _all_label_fragments(self, spec: Spec, context: str) -> set[int]:
        """Fragments that print some requested key's label: never a value for another key."""
        found: set[int] = set()
        if isinstance(spec, ObjectSpec):
            for child in spec.fields:
                found |= self._all_label_fragments(child, context)
        elif isinstance(spec, FieldSpec):
            described = self._describe(spec, context)
            for hit in find_labels(self.page, described.variants[:1], min_similarity=0.9):
                if not hit.tail:
                    found.update(f.index for f in hit.fragments)
        return found

    def _fill_field(self, field: _Field) -> Any:
        value = self._find_value(field)
        if value is None:
            return None
        if field.spec.json_type in ("number", "integer"):
            number = amount_value(value)
            if number is not None:
                return int(number) if field.spec.json_type == "integer" else number
        if field.spec.json_type == "boolean":
            return bool(value)
        return value

    def _find_value(self, field: _Field) -> str | None:
        concept = field.concept.name if field.concept else None
        words = f"{field.spec.key} {field.spec.description}"
        role = date_role(words) if field.value_type is ValueType.DATE else None
        if role is not None:
            # A key that names a thing with a span (flight_start_date) takes that span's
            # end from a printed range; a bare end (check_in, date_from) its own label
            # first, and a range only when no label gives it.
            subject = subject_words(words)
            ranged = self._range_value(subject, role)
            if ranged is not None and subject:
                self._how = "range"
                return ranged
            labelled = self._labelled_value(field)
            if labelled is not None or ranged is not None:
                self._how = self._how if labelled is not None else "range"
                return labelled or ranged
        qualifier = total_qualifier(words) if field.value_type is ValueType.AMOUNT else None
        if qualifier is not None:
            qualified = self._qualified_amount(field, qualifier)
            if qualified is not None:
                return qualified
        if concept == "total":
            # A gross total is never the net one after commission or discount.
            unless = _NET_FIGURES if qualifier is not None and qualifier.name == "gross" else None
            self._how = "payable_total"
            return totals.payable_total(self.page, unless=unless)
        seller_block = not field.buyer and field.value_type in (
            ValueType.COMPANY,
            ValueType.ADDRESS,
        )
        if seller_block:
            # Issuers rarely label their own name and address; a label like "Company:"
            # is trusted only with a value of the right shape.
            labelled = self._labelled_value(field, strict=True)
            if labelled is not None:
                return labelled
            if field.value_type is ValueType.COMPANY and _STORE_WORDS.search(words):
                self._how = "store_name"
                return merchant.store_name(self.page)
            if field.value_type is ValueType.COMPANY:
                self._how = "company_name"
                return merchant.company_name(self.page)
            self._how = "issuer_address"
            return merchant.address(self.page)
        labelled = self._labelled_value(field)
        if labelled is not None:
            return labelled
        self._how = "unlabelled"
        return self._unlabelled_value(field)

    def _range_value(self, subject: list[str], role: str) -> str | None:
        """The first or the second date of a printed range ("1/13/2020 - 1/19/2020"), for
        a key that asks for a start or an end: the range printed beside the key's other
        words (``subject``: "flight" of flight_start_date) if one is, else the page's first
        range."""
        found = []
        for row in self.page.rows:
            above = self.page.rows[row.index - 1].text if row.index > 0 else ""
            ranges = find_date_ranges(row.text)
            for number, (at, first, second) in enumerate(ranges):
                spans = re.sub(r"\W", "", first) != re.sub(r"\W", "", second)
                # The key's word printed just before this range on its row (after the
                # range before it: "Invoice Period 1/27 - 2/14 Flight Dates 2/8 - 2/14"),
                # else on the row above a row holding only this range.
                since = ranges[number - 1][0] + 1 if number else 0
                before = row.text[since:at].lower()
                above_only = above.lower() if len(ranges) == 1 else ""
                mentioned = any(word in before or word in above_only for word in subject)
                found.append((not mentioned, not spans, row.index, at, first, second))
        if not found:
            return None
        best = min(found)
        return best[4] if role == "start" else best[5]

    def _qualified_amount(self, field: _Field, qualifier: Qualifier) -> str | None:
        """An amount the key qualifies ("gross", "net", "subtotal", "tax"): read beside a
        label that prints that word, never the payable total in its place."""
        variants = [
            *(f"{word} total" for word in qualifier.words[:1]),
            *field.variants[:2],
            *qualifier.words,
        ]
        asks_total = bool(_TOTAL_WORDS.search(f"{field.spec.key} {field.spec.description}"))
        for hit in find_labels(self.page, variants, exclude=frozenset(self._claimed))[:12]:
            if not qualifier.printed.search(" ".join(f.text for f in hit.fragments)):
                continue
            value = self._column_total(hit) if asks_total else None
            self._how = "column_total"
            if value is None:
                value = self._value_near(hit, ValueType.AMOUNT)
                self._how = f"qualified_{self._how}"
            if value is not None and find_amounts(value):
                self._claimed.update(f.index for f in hit.fragments)
                return value
        return None

    def _column_total(self, hit: LabelHit) -> str | None:
        """The figure on the totals row of the column ``hit`` heads ("Gross Amount" over
        each period's gross and, last, "Totals"), else ``None``."""
        if hit.tail:
            return None
        left, right = hit.fragments[0].left, hit.last.right
        current = hit.last
        for _ in range(_COLUMN_ROWS):
            # The fragment under the heading: the one overlapping it most.
            overlaps = [
                (min(f.right, right) - max(f.left, left), f)
                for f in self.page.below(current, max_gap=2.0)
            ]
            overlap, current = max(overlaps, key=lambda o: o[0], default=(0.0, current))
            if overlap <= 0:
                return None
            row = self.page.row_of[current.index]
            if totals.says_total(row.text):
                found = find_amounts(current.text)
                return found[0] if found else None
        return None

    def _labelled_value(self, field: _Field, *, strict: bool = False) -> str | None:
        exclude = frozenset(self._claimed)
        hits = find_labels(self.page, field.variants, exclude=exclude)
        for hit in hits[:12]:
            if strict and (hit.score < 0.95 or not hit.colon):
                continue
            value = self._value_near(hit, field.value_type)
            if value is not None:
                self._claimed.update(f.index for f in hit.fragments)
                # How the label was found says how sure the value is: "+colon" (a label
                # that ends in one), "+fuzzy" (read with slips), "+alias" (not the key's
                # own words, another of its names).
                self._how = "".join(
                    (
                        f"label_{self._how}",
                        "+colon" if hit.colon else "",
                        "+fuzzy" if hit.score < 0.95 else "",
                        "+alias" if hit.variant > 0 else "",
                    )
                )
                return value
        return None

    def _usable(self, fragment: Fragment, hit: LabelHit) -> bool:
        return fragment.index not in self._label_fragments and fragment not in hit.fragments

    def _value_near(self, hit: LabelHit, value_type: ValueType) -> str | None:
        self._how = "tail"
        if hit.tail:
            value = _typed_value(hit.tail, value_type)
            if value is not None:
                return value
        self._how = "right"
        right: list[Fragment] = []
        for fragment in self.page.right_of(hit.last):
            if not self._usable(fragment, hit):
                break
            right.append(fragment)
        if len(right) > 1 and right[0].text.rstrip().endswith((":", "\uff1a")):
            right = right[1:]  # the label goes on ("Advertiser" "Name:"): the value follows
        if right and self._heads_a_column(hit, right[0]):
            right = []
        if value_type in _FREE_TEXT:
            # A value column that does not line up with its label column: the value is
            # beside the label a little above or below its line, nearer than anything on it.
            unit = self.page.line_height
            offset = None
            if not right or right[0].left - hit.last.right >= _BOX_GAP * unit:
                offset = self._offset_value(hit)
            if offset is not None:
                right = [offset]
                self._how = "offset"
        if right:
            if value_type in _FREE_TEXT:
                text = right[0].text
                if value_type in (ValueType.TEXT, ValueType.ADDRESS):
                    text = " ".join([text, *(f.text for f in self._continuation(right[0]))])
                return _typed_value(self._strip_labels(text), value_type)
            value = _typed_value(" ".join(f.text for f in right), value_type)
            if value is not None:
                return value
        self._how = "below"
        below = [f for f in self.page.below(hit.last) if self._usable(f, hit)]
        if len(below) > 1:
            # A value under its label starts at the label's left edge, not in the box before.
            left = hit.fragments[0].left - self.page.line_height
            below = [f for f in below if f.left >= left] or below
        if below and value_type not in _FREE_TEXT:
            for fragment in below:
                value = _typed_value(fragment.text, value_type)
                if value is not None:
                    return value
        elif below and not right:
            return _typed_value(self._strip_labels(" ".join(f.text for f in below)), value_type)
        return None

    def _offset_value(self, hit: LabelHit) -> Fragment | None:
        """The value of a label in a column of labels ("Advertiser" over "Agency" over
        "Product", each with its value in a column to the right) when the value is not on
        the label's row but half a line off it: the nearest text right of the label whose
        middle is within a line of the label's, provided the label column goes on below
        (the text under the label is the next label, with a value of its own, not this
        label's value)."""
        label, unit = hit.last, self.page.line_height
        under = [
            f
            for f in self.page.below(hit.fragments[0], max_gap=1.0)
            if abs(f.left - hit.fragments[0].left) < unit
        ]
        next_values = [
            f
            for f in (self.page.right_of(under[0]) if under else [])
            if 0 < f.left - under[0].right < _BOX_GAP * unit and self._usable(f, hit)
        ][:1]
        if not next_values:
            return None
        middle = (label.top + label.bottom) / 2
        # In the value column: lined up with the next label's value, and not that value.
        beside = [
            f
            for f in self.page.fragments
            if abs(f.left - next_values[0].left) < unit
            and f is not next_values[0]
            and 0 < f.left - label.right < _BOX_GAP * unit
            and abs(f.center_y - middle) < 0.9 * unit
            and self.page.row_of[f.index] is not self.page.row_of[label.index]
            and self._usable(f, hit)
            and f.index not in self._claimed
            and not f.text.rstrip().endswith((":", "\uff1a"))
        ]
        return min(beside, key=lambda f: abs(f.center_y - middle), default=None)

    def _heads_a_column(self, hit: LabelHit, neighbour: Fragment) -> bool:
        """Whether a label without a colon heads a column of a grid of boxes (label above
        value, as order forms print "Advertiser" over the advertiser's name): its value is
        under it, and the text to its right, boxes away rather than beside it, is the next
        box's heading with a value of its own under it."""
        if hit.colon or hit.tail:
            return False
        unit = self.page.line_height
        if neighbour.left - hit.last.right < _BOX_GAP * unit:
            return False

        def value_under(fragment: Fragment) -> bool:
            return any(
                abs(f.left - fragment.left) < unit and f.index not in self._label_fragments
                for f in self.page.below(fragment, max_gap=1.0)
            )

        return value_under(hit.fragments[0]) and value_under(neighbour)

    def _continuation(self, fragment: Fragment) -> list[Fragment]:
        """Lines that carry on a free-text value under its first line, aligned with it."""
        found: list[Fragment] = []
        current = fragment
        unit = self.page.line_height
        for _ in range(3):
            row = self.page.row_of[current.index]
            following = self.page.rows[row.index + 1 : row.index + 2]
            if not following or following[0].top - current.bottom > 0.7 * unit:
                break
            aligned = [
                f
                for f in following[0].fragments
                if abs(f.left - fragment.left) < 1.5 * unit
                and f.index not in self._label_fragments
                and not f.text.rstrip().endswith((":", "\uff1a"))
            ]
            # Something printed left of the next line (a label) means a new entry starts.
            if not aligned or any(
                f.right < aligned[0].left - 0.5 * unit for f in following[0].fragments
            ):
                break
            current = aligned[0]
            found.append(current)
        return found

    def _strip_labels(self, text: str) -> str:
        """Cut another key's label off the end of a value ("Milw. South DIVISION NAME")."""
        for pattern in self._label_patterns:
            cut = pattern.sub("", text)
            if cut != text and re.search(r"[^\W_]", cut):
                return cut
        return text

    def _unlabelled_value(self, field: _Field) -> str | None:
        page_text = "\n".join(row.text for row in self.page.rows)
        value_type = field.value_type
        if value_type is ValueType.DATE:
            dates = find_dates(page_text)
            return dates[0][1] if dates else None
        if value_type is ValueType.EMAIL:
            return find_email(page_text)
        if value_type is ValueType.URL:
            return find_url(page_text)
        if value_type is ValueType.PHONE:
            for row in self.page.rows:
                if re.search(r"tel|phone|mobile|电话|手机", row.text, re.IGNORECASE):
                    phone = find_phone(row.text)
                    if phone:
                        return phone
            return None
        if value_type is ValueType.TIME:
            return find_time(page_text)
        return None

    def _fill_array(self, spec: ArraySpec, context: str, path: str) -> list[Any]:
        item = spec.item
        if isinstance(item, ObjectSpec):
            leaves = [c for c in item.fields if isinstance(c, FieldSpec)]
            columns = [
                Column(c.key, column_role(c.key, c.description), c.description) for c in leaves
            ]
            rows = extract_table(self.page, columns) if columns else []
            # Each column's rule for its confidence, once for all its rows.
            how = {
                c.key: f"table/{detect_type(c.key, c.description, c.json_type).value}"
                for c in leaves
            }
            records: list[dict[str, Any]] = []
            for row in rows:
                record: dict[str, Any] = {}
                for child in item.fields:
                    if isinstance(child, FieldSpec):
                        record[child.key] = _cast(row.get(child.key), child)
                        if record[child.key] is not None:
                            self.how[f"{path}[{len(records)}].{child.key}"] = how[child.key]
                    else:
                        record[child.key] = empty_value(child)
                records.append(record)
            return records
        if isinstance(item, FieldSpec):
            field = self._describe(item, f"{context} {spec.description}")
            page_text = "\n".join(row.text for row in self.page.rows)
            found: list[Any]
            if field.value_type is ValueType.DATE:
                found, self._how = [d for _, d in find_dates(page_text)], "list"
            elif field.value_type is ValueType.EMAIL:
                found = sorted(set(re.findall(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+", page_text)))
                self._how = "list"
            else:
                value = self._find_value(field)
                found = [value] if value is not None else []
            for index in range(len(found)):
                self.how[f"{path}[{index}]"] = f"{self._how}/{field.value_type.value}"
            return found
        return []


def _cast(value: str | None, spec: FieldSpec) -> Any:
    if value is None:
        return None
    if spec.json_type in ("number", "integer"):
        number = amount_value(value)
        if number is not None:
            return int(number) if spec.json_type == "integer" else number
    return value


# --- entry point -------------------------------------------------------------------------

_shared_recognizer: TextRecognizer | None = None
_shared_lock = threading.Lock()


def shared_recognizer() -> TextRecognizer:
    """The process-wide recogniser, loaded on first use."""
    global _shared_recognizer
    with _shared_lock:
        if _shared_recognizer is None:
            _shared_recognizer = TextRecognizer()
        return _shared_recognizer


def decode_image(image: Image.Image | bytes) -> Image.Image:
    """A loaded Pillow image; raises ``CorruptImage`` when the bytes are not an image."""
    if isinstance(image, Image.Image):
        return image
    try:
        decoded = Image.open(io.BytesIO(image))
        decoded.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImage("the image could not be decoded") from exc
    return decoded


def render_content(page: Page, prompt: str, scene: Scene, json_mode: bool) -> str:
    """The content string for ``prompt`` from a laid-out page (no OCR involved)."""
    return fill_content(page, prompt, scene, json_mode)[0]


def fill_content(
    page: Page, prompt: str, scene: Scene, json_mode: bool
) -> tuple[str, dict[str, str]]:
    """``render_content`` and how each value was found, by its path (see
    ``SchemaFiller.how``; empty for a prompt without a schema)."""
    spec = parse_schema(prompt)
    if spec is None:
        text = page.reading_text()
        return (json.dumps({"text": text}, ensure_ascii=False) if json_mode else text), {}
    filler = SchemaFiller(page, scene)
    value = filler.fill(spec)
    return json.dumps(value, ensure_ascii=False), filler.how


@dataclass(frozen=True, slots=True)
class PageReading:
    """One page as the engine read it: its lines for the layout, the same lines for
    grounding (boxes as fractions of the image as sent), how it was read, and the size of
    the image as sent (for usage). Holds no pixels."""

    text: PageText
    printed: tuple[PrintedLine, ...]
    source: PageSource
    image_size: tuple[int, int]


def read_image(
    image: Image.Image | bytes,
    recognizer: TextRecognizer | None = None,
    *,
    page: int | None = None,
) -> PageReading:
    """OCR of an image, turned upright first if it needs it; ``page`` numbers its printed
    lines. Raises ``CorruptImage`` for bytes that do not decode."""
    picture = decode_image(image)
    reading = (recognizer or shared_recognizer()).recognise_upright(picture)
    return PageReading(
        text=PageText(reading.lines, *reading.upright_size),
        printed=printed_lines(reading, page=page),
        source=PageSource.OCR,
        image_size=picture.size,
    )


def read_text_layer(page: DocumentPage, text: Sequence[PrintedLine]) -> PageReading:
    """A page's own text layer (lines with boxes as fractions of the page) in the pixels of
    the page as rendered, as if OCR had read it, without looking at the picture."""
    width, height = page.image.width, page.image.height
    lines = []
    for line in text:
        x0, y0, x1, y1 = line.box
        left, top, right, bottom = x0 * width, y0 * height, x1 * width, y1 * height
        quad = ((left, top), (right, top), (right, bottom), (left, bottom))
        lines.append(OcrLine(text=line.text, quad=quad, confidence=line.confidence))
    return PageReading(
        text=PageText(lines, width, height, recognised=False),
        printed=tuple(replace(line, page=page.number) for line in text),
        source=PageSource.TEXT_LAYER,
        image_size=(width, height),
    )


def read_page(page: DocumentPage, recognizer: TextRecognizer | None = None) -> PageReading:
    """A document page from its text layer when it has one (exact, and no OCR to run),
    else by OCR of its picture."""
    if page.text is not None:
        return read_text_layer(page, page.text)
    return read_image(page.image.data, recognizer, page=page.number)


def fill_from_pages(
    pages: Sequence[PageReading],
    prompt: str,
    scene: Scene | str = Scene.GENERAL,
    json_mode: bool = False,
    *,
    started: float,
) -> EngineResult:
    """Fill ``prompt`` from pages already read, laid out as one tall page (see
    ``build_pages``); ``started`` is the ``time.perf_counter()`` at which reading began."""
    page = build_pages([reading.text for reading in pages])
    content, how = fill_content(page, prompt, Scene(scene), json_mode)
    return EngineResult(
        content=content,
        usage=estimate_pages_usage(prompt, (reading.image_size for reading in pages), content),
        text=page.reading_text(),
        fragments=len(page.fragments),
        seconds=time.perf_counter() - started,
        printed=tuple(line for reading in pages for line in reading.printed),
        page_sources=tuple(reading.source for reading in pages),
        how=how,
    )


def extract_document(
    image: Image.Image | bytes,
    prompt: str,
    scene: Scene | str = Scene.GENERAL,
    json_mode: bool = False,
    *,
    recognizer: TextRecognizer | None = None,
) -> EngineResult:
    """Extract what ``prompt`` asks for from a document image.

    With a JSON template or JSON Schema in the prompt the content is that JSON filled in
    (also without ``json_mode``, as a model would answer); otherwise it is the recognised
    text in reading order, wrapped as ``{"text": ...}`` in JSON mode. Raises
    ``CorruptImage`` for bytes that do not decode.
    """
    started = time.perf_counter()
    reading = read_image(image, recognizer)
    return fill_from_pages([reading], prompt, scene, json_mode, started=started)


def extract_pages(
    pages: Iterable[DocumentPage],
    prompt: str,
    scene: Scene | str = Scene.GENERAL,
    json_mode: bool = False,
    *,
    recognizer: TextRecognizer | None = None,
) -> EngineResult:
    """``extract_document`` for a document of several pages: one answer from all of them.

    ``pages`` is taken one page at a time (it may render each as it is asked for) and only
    each page's lines are kept, never its picture. Printed lines carry their page number.
    Raises ``CorruptImage`` for a page image that does not decode.
    """
    started = time.perf_counter()
    readings = [read_page(page, recognizer) for page in pages]
    return fill_from_pages(readings, prompt, scene, json_mode, started=started)


def printed_lines(reading: Reading, *, page: int | None = None) -> tuple[PrintedLine, ...]:
    """OCR lines with their boxes as fractions of the image as it was sent, for grounding;
    ``page`` is the page number they carry in a multi-page document."""
    width, height = reading.size
    printed = []
    for line in reading.lines:
        corners = [
            reading.to_image(x, y) for x, y in ((line.left, line.top), (line.right, line.bottom))
        ]
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        printed.append(
            PrintedLine(
                text=line.text,
                box=(min(xs) / width, min(ys) / height, max(xs) / width, max(ys) / height),
                confidence=line.confidence,
                page=page,
            )
        )
    return tuple(printed)
