"""The issuer block at the top of receipts and invoices: company name and address.

Receipts rarely label these. The name is the top-most line carrying a legal-form suffix
(SDN BHD, LTD, GMBH, 有限公司), else the first prominent line; the address is the run of
lines after it up to the first phone, registration, tax or date line. A store or chain name
is what a reader gives instead: the brand on the logo line, without legal form or branch.
"""

from __future__ import annotations

import re

from extraction.engine.layout import Page, Row
from extraction.engine.values import (
    address_strength,
    company_strength,
    find_dates,
    has_postcode,
    repair_company,
)

# Lines that head a document without naming its issuer.
_HEADINGS = re.compile(
    r"^\W*(?:(?:simplified|full|official|original|duplicate|customer|merchant)?\s*"
    r"(?:tax\s*)?(?:invoice|receipt|bill|quotation|order|statement|copy|cash\s*sales?|"
    r"sales?\s*receipt|delivery\s*order)|welcome(?:\s+to)?|thank\s*you.*|tel.*|"
    r"发票|收据|小票|收费票据|专用发票|普通发票|电子发票)\W*$",
    re.IGNORECASE,
)
# Lines that end the address: contact details, registration and tax numbers, documents.
_ADDRESS_STOP = re.compile(
    r"(?<![A-Z])(?:TEL|TELEPHONE|PHONE|FAX|H/?P|MOBILE|E-?MAIL|WWW|HTTP|GST|SST|VAT|TAX|"
    r"REG(?:ISTRATION)?|ROC|CO\.?\s*(?:NO|REG)|COMPANY\s*NO|BUSINESS\s*NO|INVOICE|RECEIPT|"
    r"CASHIER|DATE|TIME|TABLE|BILL|DOC|ORDER|SLIP|TERMINAL|POS|OPEN|HOURS|ID\s*NO)"
    r"(?![A-Z])|电话|传真|税号|发票|日期",
    re.IGNORECASE,
)
_REGISTRATION_ONLY = re.compile(
    r"^[\s(\[]*(?:CO\.?\s*(?:REG\.?)?\s*NO\.?|COMPANY\s*NO\.?|ROC\s*NO\.?|REG\.?\s*NO\.?)?"
    r"[\s:.]*[(\[]?\s*[A-Z]{0,3}\s?\d[\d\-]{3,}\s?(?:-?\s?[A-Z]){0,2}\s*[)\]]?\s*$",
    re.IGNORECASE,
)
_SUFFIX_ONLY = re.compile(
    r"^\W*(?:\(M\)\s*)?(?:SDN\.?\s*[B8][HN][DUO0]|BHD|BERHAD|LTD|LIMITED|INC)\W*$", re.I
)
_HEADER_ROWS = 12
_SUFFIX_TAIL = re.compile(
    r"\(?\s*(?:\(M\)\s*)?(?:SDN\.?\s*[B8][HN][DUO0]|BHD|BERHAD|LTD|LIMITED|INC|[S5]/B)\W*(?:\(?\d.*)?$",
    re.IGNORECASE,
)


# "(SETIA ALAM)" on the line under a name: the branch, printed as part of the name.
_BRANCH = re.compile(r"^\s*\([A-Za-z][A-Za-z .&'-]{2,}\)\s*$")


# "Seller: ACME LTD", "销售方名称: …": keep the value, not its label.
_LABEL_PREFIX = re.compile(r"^[^:\uff1a\d]{1,24}[:\uff1a]\s*(?=\S)")


def _letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def _is_heading(text: str) -> bool:
    return bool(_HEADINGS.match(text))


_REGISTRATION = re.compile(
    r"(?<![A-Z])(?:CO\.?\s*REG|REG(?:ISTRATION)?\.?\s*NO|COMPANY\s*(?:REG|NO)|ROC|BRN|"
    r"REG\.?\s*:|SSM|LICEN[CS]E)(?![A-Z])",
    re.IGNORECASE,
)
# "(1072825-A)", "862725-U", "(139386 X)": company numbers printed beside the name.
_REGISTRATION_NUMBER = re.compile(
    r"[(\[]?\s*[A-Z]{0,3}\d{4,}\s?-?\s?[A-Z]?\s*[)\]]?", re.IGNORECASE
)


def _eligible_name(text: str) -> bool:
    if _letters(text) < 3 or _is_heading(text) or _REGISTRATION.search(text):
        return False
    if _ADDRESS_STOP.search(text) or find_dates(text) or _REGISTRATION_ONLY.match(text):
        return False
    bare = _REGISTRATION_NUMBER.sub("", text)
    digits = sum(ch.isdigit() for ch in bare)
    return digits <= _letters(bare) // 2


def _continues_upwards(previous: Row, current: Row) -> bool:
    """Whether ``current`` is the continuation of a name that starts on ``previous``."""
    if not _eligible_name(previous.text):
        return False
    upper_words = set(re.findall(r"[A-Z]{2,}", previous.text.upper()))
    lower_words = set(re.findall(r"[A-Z]{2,}", current.text.upper()))
    if upper_words and upper_words <= lower_words:
        return False
    before_suffix = _SUFFIX_TAIL.sub("", current.text)
    first_word = before_suffix.split()[0] if before_suffix.split() else ""
    unfinished = (
        _SUFFIX_ONLY.match(current.text) is not None
        or previous.text.count("(") > previous.text.count(")")
        or len(before_suffix.split()) <= 1
        or company_strength(first_word) > 0
    )
    return (
        unfinished
        and current.top - previous.bottom < 0.8 * current.height
        and abs(previous.height - current.height) < 0.35 * current.height
        and company_strength(previous.text) < 2
        and address_strength(previous.text) == 0
    )


def company_rows(page: Page) -> list[Row]:
    """The row(s) naming the issuer, top-most first; empty when nothing qualifies."""
    rows = page.rows[:_HEADER_ROWS]
    # The issuer's name comes before its address; a legal name printed further down
    # ("Owned by: ... SDN BHD") belongs to someone else.
    address_at = next(
        (r.index for r in rows if address_strength(r.text) >= 2 and company_strength(r.text) == 0),
        len(page.rows),
    )
    rows = [r for r in rows if r.index < address_at]
    strong = [r for r in rows if company_strength(r.text) == 2 and _eligible_name(r.text)]
    chosen: list[Row] = []
    if strong:
        chosen = [strong[0]]
        # A name broken over lines continues upwards while each line is visibly unfinished
        # (a suffix alone, an open bracket, a lone word); a logo line repeating it does not.
        while len(chosen) < 3 and chosen[0].index > 0:
            previous = page.rows[chosen[0].index - 1]
            if not _continues_upwards(previous, chosen[0]):
                break
            chosen.insert(0, previous)
        return chosen
    weak = [r for r in rows[:6] if company_strength(r.text) == 1 and _eligible_name(r.text)]
    if weak:
        return [weak[0]]
    for row in rows[:6]:
        if _eligible_name(row.text) and address_strength(row.text) < 2:
            return [row]
    return []


def company_name(page: Page) -> str | None:
    """The issuer's name as printed, with suffix misreads repaired."""
    rows = company_rows(page)
    if not rows:
        return None
    following = page.rows[rows[-1].index + 1 : rows[-1].index + 2]
    if following and _BRANCH.match(following[0].text):
        rows = [*rows, following[0]]
    name = repair_company(_LABEL_PREFIX.sub("", " ".join(r.text for r in rows)))
    return name or None


# Legal forms, in the languages receipts print them, cut from a store name's end.
_LEGAL_FORM = re.compile(
    r"[\s,]+(?:SDN\.?\s*[B8][HN][DUO0]|BHD|BERHAD|PTE\.?\s*LTD|PTY\.?\s*LTD|LTD|LIMITED|INC|"
    r"L\.?L\.?C|CORP(?:ORATION)?|CO\.|PLC|LLP|GMBH(?:\s*&\s*CO\.?\s*(?:KG|OHG))?|AG|KG|OHG|"
    r"E\.\s?K\.?|SE|S\.?A\.?S|SARL|S\.?A\.?R\.?L|S\.?A|S\.?L|S\.?P\.?A|S\.?R\.?L|LDA|"
    r"B\.?V|N\.?V|[S5]/B|有限公司)\.?(?=\W*$)",
    re.IGNORECASE,
)
# A branch printed after the brand: "Filiale 0815", "- Berlin Mitte", "(SETIA ALAM)".
_BRANCH_TAIL = re.compile(
    r"\s*(?:[-\u2013|/]\s+.*|\(.*\)|(?:filiale|fil\.|branch|succursale|sucursal|"
    r"filiaal|store|outlet|markt|nr\.?|no\.?|#)\s*[\w-]*\d[\w-]*)\s*$",
    re.IGNORECASE,
)


def store_name(page: Page) -> str | None:
    """A store or chain name as a reader gives it: the most prominent line of the header
    (the logo line), without its legal form or branch; else the company name, likewise."""
    header = [
        r
        for r in page.rows[:8]
        if _eligible_name(r.text) and address_strength(r.text) < 2 and not _BRANCH.match(r.text)
    ]
    rows = company_rows(page)
    if header:
        tallest = max(header, key=lambda r: (r.height, -r.index))
        if not rows or tallest.height > 1.2 * rows[0].height or tallest.index <= rows[0].index:
            rows = [tallest]
    if not rows:
        return None
    name = _LABEL_PREFIX.sub("", " ".join(r.text for r in rows))
    for pattern in (_BRANCH_TAIL, _LEGAL_FORM, _BRANCH_TAIL):
        cut = pattern.sub("", name).strip(" ,.-")
        if _letters(cut) >= 2:
            name = cut
    return name or None


def _postcode_then_place(text: str) -> bool:
    """A postcode followed by a place name on the same line usually ends an address."""
    match = re.search(r"(?<![\d\-/.])\d{4,6}(?![\d\-/.])\s*,?\s*[A-Za-z]{3,}", text)
    return bool(match) and has_postcode(text)


def _stops_address(text: str) -> bool:
    return bool(_ADDRESS_STOP.search(text) or find_dates(text) or _is_heading(text))


# Countries end an address; whatever follows (a mall, a branch) is something else.
_COUNTRY_END = re.compile(
    r"(?<![A-Z])(?:MALAYSIA|SINGAPORE|INDONESIA|THAILAND|PHILIPPINES|VIETNAM|CHINA|INDIA|JAPAN|"
    r"KOREA|AUSTRALIA|NEW ZEALAND|CANADA|USA|U\.S\.A|UNITED STATES|UNITED KINGDOM|UK|"
    r"GERMANY|FRANCE|SPAIN|ITALY|NETHERLANDS|中国)\W*$",
    re.IGNORECASE,
)
_ADDRESS_LABEL = re.compile(
    r"^\W*(?:[A-Z]{1,3}\s+)?(?:ADDRESS|ADDR|ADD|地址)\s*[:\uff1a.]\s*", re.IGNORECASE
)
# A letter O (or o) closing a run of digits is a zero ("NO 29O").
_LETTER_ZERO = re.compile(r"(?<=\d)[Oo](?=[\s,.]|$)")


def _ends_with_postcode(text: str) -> bool:
    return bool(re.search(r"(?<![\d\-/.])\d{4,6}\W*$", text)) and has_postcode(text)


def _address_head(text: str) -> str | None:
    """The part of a line before its contact or tax details, when it is a postcode and a
    town ("81750 Johor Bahru, Johor." of "81750 Johor Bahru, Johor. Tel No.: 07-387 3322")."""
    stop = _ADDRESS_STOP.search(text)
    if stop is None or stop.start() == 0:
        return None
    head = text[: stop.start()].strip(" ,;:-")
    return head if has_postcode(head) and not find_dates(head) else None


def address(page: Page) -> str | None:
    """The issuer's address: address-like rows after the name, before contact/tax lines."""
    name_rows = company_rows(page)
    start = name_rows[-1].index + 1 if name_rows else 0
    candidates = page.rows[start : start + 10]
    collected: list[Row] = []
    town: str | None = None  # the start of the line that ends the address
    skipped = 0
    unit = page.line_height
    for row in candidates:
        text = row.text
        strength = address_strength(text)
        if not collected:
            if _REGISTRATION_ONLY.match(text) or (_ADDRESS_STOP.search(text) and strength < 2):
                skipped += 1
                if skipped > 3:
                    break
                continue
            if strength == 0:
                # A branch or slogan line before the address; allow a couple.
                skipped += 1
                if skipped > 3:
                    break
                continue
            collected.append(row)
            continue
        gap = row.top - collected[-1].bottom
        if _COUNTRY_END.search(collected[-1].text) or gap > 1.8 * unit:
            break
        if _stops_address(text) or _REGISTRATION_ONLY.match(text):
            # "81750 Johor Bahru, Johor. Tel: 07-387 3322": the address ends on this line.
            town = _address_head(text)
            break
        if _ends_with_postcode(collected[-1].text) and strength == 0 and not re.search(r"\d", text):
            collected.append(row)  # the town after a postcode that ends its line
            continue
        if _postcode_then_place(collected[-1].text) and (
            len(text.split()) > 5
            or (strength == 0 and re.search(r"\d{3,}", text) is None and False)
        ):
            break
        if strength == 0 and (re.search(r"\d", text) or len(text.split()) > 4):
            break
        collected.append(row)
    if not collected:
        return None
    parts = [r.text for r in collected] + ([town] if town else [])
    text = _ADDRESS_LABEL.sub("", " ".join(parts))
    return _LETTER_ZERO.sub("0", text).strip(" ,") or None
