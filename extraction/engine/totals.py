"""Choosing the amount a document says was payable among its many totals.

Receipts print a subtotal, tax, a total, a rounding adjustment, a rounded total, the cash
tendered and the change, in English, German, French, Spanish, Italian, Portuguese, Dutch and
Chinese. The payable total is the amount on the line with the strongest
total label; ties go to the figure that agrees with cash minus change, then to the larger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from extraction.engine.layout import Page, Row
from extraction.engine.values import amount_value, find_amounts

# Label strength: 3 = says "the final total", 2 = plain total, 1 = a bare amount label.
_STRONG = re.compile(
    r"grand\s*tota[l1]|tota[l1]\s*(?:incl|inclusive|inc\.|\(incl|amount\s*(?:due|payable)|payable|due|"
    r"to\s*pay|sales?\s*\(?incl)|(?:nett?|rounded|final)\s*tota[l1]|tota[l1]\s*(?:rounded|after)|"
    r"amount\s*(?:due|payable)|balance\s*due|total\s*amount|to\s*be\s*paid|amount\s*to\s*pay|"
    # German, French, Spanish, Italian, Portuguese, Dutch; "tax included" beside a total.
    r"(?:total|summe|gesamt|totale|totaal)\W{0,3}(?:eur\W+)?(?:(?:iva|tva|mwst|ust|btw)\W+)?"
    r"(?:inkl|incl|inclu[iíy]d[oa]|"
    r"inclus[ea]?|compreso|ttc)|"
    r"gesamtbetrag|gesamtsumme|endbetrag|endsumme|zu\s*zahlen|zahlbetrag|rechnungsbetrag|"
    r"total\s*ttc|montant\s*(?:ttc|total|d[ûu])|net\s*[àa]\s*payer|total\s*[àa]\s*payer|"
    r"importe\s*total|total\s*a\s*pagar|total\s*factura|"
    r"totale\s*(?:complessivo|da\s*pagare|documento|fattura|euro)|importo\s*totale|"
    r"valor\s*(?:total|a\s*pagar)|te\s*betalen|totaalbedrag|totaal\s*bedrag|"
    r"价税合计|应付金额|实付金额|实收金额|应收金额|费用总额|合计金额|总金额|总计|小写",
    re.IGNORECASE,
)
_PLAIN = re.compile(
    r"(?<![a-z])(?:total|totals|totl|tota1|jumlah|summe|gesamt|totale|totaal|合计|合 计)(?![a-z])|"
    r"total(?=rm|\$|\d)",
    re.IGNORECASE,
)
_BARE = re.compile(
    r"(?<![a-z])(?:amount|amt|nett|net|due|payable|betrag|montant|importe|importo|valor|bedrag)"
    r"(?![a-z])",
    re.IGNORECASE,
)
# Payment lines in the languages above: cash tendered, change given back, card.
_CASH_WORDS = (
    r"cash|tendered|tender|paid|pay|payment|bar|geg|gegeben|bargeld|barzahlung|esp[èe]ces|"
    r"numer[áa]rio|"
    r"montant\s*re[çc]u|efectivo|entregado|recibido|contanti|contante|ricevuto|dinheiro|"
    r"recebido|contant|ontvangen"
)
_CHANGE_WORDS = (
    r"change|r[üu]ckgeld|wechselgeld|zur[üu]ck|rendu|monnaie|[àa]\s*rendre|cambio|vuelto|"
    r"vueltas|resto|troco|wisselgeld|terug"
)
# Lines that carry a total label but are not the payable total.
_NOT_PAYABLE = re.compile(
    r"sub\s*-?\s*total|subtota|total\s*(?:excl|exc\.|before|qty|quantity|items?|units?|pcs|"
    r"savings?|discount|disc|tax|gst|vat|sst|service|weight|points?|count|number|no\b)|"
    r"(?:gst|vat|tax|sst|service)\s*(?:total|amount|amt|payable)|"
    r"total\s*(?:gst|tax)|(?<![a-z])(?:qty|quantity|items?)\s*total|"
    r"(?<![a-z])(?:excl|exc|excluding|before\s*tax|w/o)(?![a-z])|"
    r"cash|change|tender|paid|(?<![a-z])pay(?![a-z])|refund|deposit|saving|discount|round(?:ing)?\s*adj|"
    r"rounding|小计|找零|现金|税额|不含税|数量|"
    r"zwischensumme|sous[\s-]*total|subtotale|subtotaal|total\s*ht|montant\s*ht|netto|"
    r"base\s*imponible|imponibile|(?<![a-z])(?:mwst|ust|tva|iva|btw)(?![a-z])|"
    rf"(?<![a-z])(?:{_CASH_WORDS}|{_CHANGE_WORDS})(?![a-z])",
    re.IGNORECASE,
)
_CASH = re.compile(rf"(?<![a-z])(?:{_CASH_WORDS})(?![a-z])|现金|实收", re.IGNORECASE)
_CARD = re.compile(
    r"(?<![a-z])(?:visa|master\s*card|mastercard|amex|credit\s*card|debit|card|e-?wallet|"
    r"karte|ec-?karte|kartenzahlung|ec-?cash|girocard|carte|cb|tarjeta|carta|bancomat|"
    r"cart[aã]o|multibanco|pin|pinnen)(?![a-z])",
    re.IGNORECASE,
)
_CHANGE = re.compile(rf"(?<![a-z])(?:{_CHANGE_WORDS})(?![a-z])|找零|找赎", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Candidate:
    strength: int
    amount: str
    value: float
    row: int


def _row_amount(page: Page, row: Row) -> str | None:
    """The last amount on a labelled row, else the first amount on the row right below."""
    amounts = find_amounts(row.text)
    if amounts:
        return amounts[-1]
    for below in page.rows[row.index + 1 : row.index + 2]:
        if below.top - row.bottom < 1.5 * row.height and not re.search(r"[A-Za-z]{3,}", below.text):
            found = find_amounts(below.text)
            if found:
                return found[0]
    return None


def _labelled_amount(page: Page, pattern: re.Pattern[str]) -> float | None:
    for row in page.rows:
        if pattern.search(row.text) and not _STRONG.search(row.text):
            found = _row_amount(page, row)
            value = amount_value(found) if found else None
            if value is not None:
                return value
    return None


def _payment_row(page: Page) -> int | None:
    """Index of the first row recording payment (cash, card, change) with an amount."""
    for row in page.rows:
        if _STRONG.search(row.text):
            continue
        if (_CASH.search(row.text) or _CHANGE.search(row.text) or _CARD.search(row.text)) and (
            find_amounts(row.text)
        ):
            return row.index
    return None


def payable_total(page: Page, *, unless: re.Pattern[str] | None = None) -> str | None:
    """The payable total as printed ("73.00"), or ``None`` when the page shows no amounts.
    Rows matching ``unless`` are not candidates ("net" when the gross total is asked)."""
    candidates: list[_Candidate] = []
    for row in page.rows:
        text = row.text
        if unless is not None and unless.search(text):
            continue
        if _STRONG.search(text):
            strength = 3
        elif _PLAIN.search(text):
            strength = 2
        elif _BARE.search(text):
            strength = 1
        else:
            continue
        if _NOT_PAYABLE.search(text) and not _STRONG.search(text):
            continue
        found = _row_amount(page, row)
        value = amount_value(found) if found else None
        if found is None or value is None or value <= 0:
            continue
        candidates.append(_Candidate(strength, found, value, row.index))
    paid_at = _payment_row(page)
    cash, change = _labelled_amount(page, _CASH), _labelled_amount(page, _CHANGE)
    if cash is not None and change is not None and cash - change > 0:
        # Cash tendered minus change is what was paid; a figure above the payment lines
        # that agrees with it is the total even when its label was misread.
        paid = cash - change
        agreeing = [c for c in candidates if abs(c.value - paid) < 0.005]
        if agreeing:
            return max(agreeing, key=lambda c: (c.strength, c.row)).amount
        first = min((c.row for c in candidates), default=0)
        for row in page.rows[first : paid_at if paid_at is not None else None]:
            if _CASH.search(row.text) or _CHANGE.search(row.text):
                continue
            for found in find_amounts(row.text):
                value = amount_value(found)
                if value is not None and abs(value - paid) < 0.005:
                    return found
    if not candidates:
        return _largest_amount(page)
    before_payment = [c for c in candidates if paid_at is not None and c.row < paid_at]
    if before_payment and max(c.strength for c in before_payment) >= 2:
        # The last total before the payment lines is the one after tax and rounding.
        return max((c for c in before_payment if c.strength >= 2), key=lambda c: c.row).amount
    top = max(c.strength for c in candidates)
    best = [c for c in candidates if c.strength == top]
    return max(best, key=lambda c: (c.value, c.row)).amount


def says_total(text: str) -> bool:
    """Whether a row's text labels a total ("Totals", "Grand Total", "Summe", "合计")."""
    return bool(_STRONG.search(text) or _PLAIN.search(text))


def _largest_amount(page: Page) -> str | None:
    """Without any total label the payable figure is usually the largest non-cash amount."""
    best: tuple[float, str] | None = None
    for row in page.rows:
        if _CASH.search(row.text) or _CHANGE.search(row.text):
            continue
        for found in find_amounts(row.text):
            value = amount_value(found)
            if value is not None and (best is None or value > best[0]):
                best = (value, found)
    return best[1] if best else None
