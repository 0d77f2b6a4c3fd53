"""Typed values beside the printed ones: dates as ISO 8601, amounts as a decimal string with
the currency when one is printed. The values in ``parsed`` stay as printed; ``normalized``
holds the typed ones by path (``date``, ``items[0].total``).

A value is an amount when it states one number and its key is about money (total, amount,
price, tax, …) or it carries a currency; it is a date when it prints a day. The parsing is
price-parser's and dateparser's. A date whose day and month could be either way round
(03/02/2018) is read the way the result's other dates settle it (one with a day past 12),
else day first.
"""

from __future__ import annotations

import re
from typing import Any

from extraction.grounding import amount_of, dates_in, leaves

_MONEY_KEY = re.compile(
    r"total|amount|price|sum|tax|vat|gst|cost|fee|charge|balance|paid|due|gross|net|"
    r"subtotal|discount|deposit|rate|betrag|montant|importe|importo|valor|bedrag|金额|合计",
    re.IGNORECASE,
)
_CURRENCY = re.compile(r"[$€£¥₹]|\b[A-Z]{3}\b|\bRM\b|\bRp\b|\bkr\b", re.IGNORECASE)
_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,2})\s*[./\-]\s*(\d{1,2})\s*[./\-]\s*\d{2,4}(?!\d)")


def _date_order(values: list[str]) -> str:
    """DMY or MDY, as the dates that can only be read one way say (DMY when none do)."""
    for value in values:
        for first, second in _NUMERIC_DATE.findall(value):
            if int(first) > 12 >= int(second):
                return "DMY"
            if int(second) > 12 >= int(first):
                return "MDY"
    return "DMY"


def normalize(result: Any) -> dict[str, Any]:
    found = list(leaves(result))
    texts = [str(value) for _path, value in found]
    order = _date_order(texts)
    normalized: dict[str, Any] = {}
    for path, value in found:
        text = str(value)
        key = path.rsplit(".", 1)[-1]
        if dates_in(text) and not (_MONEY_KEY.search(key) and amount_of(value) is not None):
            import dateparser

            day = dateparser.parse(
                text,
                settings={
                    "DATE_ORDER": order,
                    "PREFER_DAY_OF_MONTH": "first",
                    "REQUIRE_PARTS": ["day", "month", "year"],
                },
            )
            if day is not None:
                normalized[path] = day.date().isoformat()
        elif amount_of(value) is not None and (_MONEY_KEY.search(key) or _CURRENCY.search(text)):
            from price_parser import Price

            price = Price.fromstring(text)
            if price.amount is not None:
                normalized[path] = {"amount": str(price.amount), "currency": price.currency}
    return normalized
