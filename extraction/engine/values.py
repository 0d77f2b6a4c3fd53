"""Value types: what a key expects (from its name and description) and how to find one in text.

Every ``find_*`` function returns the value as printed (a substring of the OCR text, lightly
cleaned), or ``None``. Keeping the printed form matters: a date written ``11/03/18`` is
returned as such rather than reformatted, the way a reader copying the document would.
"""

from __future__ import annotations

import enum
import itertools
import re
import unicodedata


class ValueType(enum.Enum):
    DATE = "date"
    TIME = "time"
    AMOUNT = "amount"
    QUANTITY = "quantity"
    PERCENT = "percent"
    IDENTIFIER = "identifier"
    PERSON = "person"
    COMPANY = "company"
    ADDRESS = "address"
    PHONE = "phone"
    EMAIL = "email"
    URL = "url"
    TEXT = "text"


# Words in a key or its description that reveal the type, checked in this order: the first
# matching row wins, so "date of payment" is a date and "payment amount" an amount.
_TYPE_CUES: tuple[tuple[ValueType, tuple[str, ...]], ...] = (
    (ValueType.EMAIL, ("email", "e-mail", "mail address", "邮箱", "电子邮件")),
    (ValueType.URL, ("website", "url", "web site", "网址")),
    (
        ValueType.PHONE,
        (
            "phone",
            "telephone",
            "tel",
            "mobile",
            "fax",
            "contact number",
            "voice number",
            "telefon",
            "telefono",
            "telefone",
            "telefoon",
            "电话",
            "手机",
            "传真",
        ),
    ),
    (ValueType.TIME, ("time", "时间", "时刻")),
    (
        ValueType.DATE,
        (
            "date",
            "dated",
            "day",
            "dob",
            "birth",
            "issued on",
            "日期",
            "时间",
            "年月日",
            "出生",
            "datum",
            "fecha",
            "echeance",
            "vencimiento",
            "scadenza",
            "vencimento",
            "vervaldatum",
            "fallig",
            "falligkeit",
        ),
    ),
    (ValueType.PERCENT, ("percent", "percentage", "rate", "%", "比例", "税率")),
    (
        ValueType.QUANTITY,
        ("qty", "quantity", "count", "number of", "units", "pieces", "pcs", "数量", "件数"),
    ),
    (
        ValueType.AMOUNT,
        (
            "amount",
            "total",
            "price",
            "cost",
            "fee",
            "charge",
            "sum",
            "subtotal",
            "tax",
            "vat",
            "gst",
            "balance",
            "paid",
            "payable",
            "due",
            "discount",
            "rounding",
            "change",
            "cash",
            "money",
            "value",
            "金额",
            "合计",
            "总计",
            "价",
            "费",
            "税额",
            "应付",
            "实付",
            "小计",
            "余额",
            "付款",
            "收款",
            "找零",
            "现金",
            "自付",
            "自费",
            "统筹",
            "betrag",
            "summe",
            "zwischensumme",
            "gesamt",
            "gesamtbetrag",
            "preis",
            "mwst",
            "ruckgeld",
            "wechselgeld",
            "montant",
            "prix",
            "tva",
            "rendu",
            "importe",
            "precio",
            "iva",
            "cambio",
            "importo",
            "totale",
            "prezzo",
            "resto",
            "valor",
            "preco",
            "troco",
            "bedrag",
            "totaal",
            "prijs",
            "btw",
        ),
    ),
    (
        ValueType.IDENTIFIER,
        (
            "number",
            "no",
            "num",
            "id",
            "code",
            "reference",
            "ref",
            "invoice #",
            "#",
            "serial",
            "account",
            "license",
            "licence",
            "registration",
            "reg",
            "tin",
            "sku",
            "编号",
            "号码",
            "号",
            "代码",
            "编码",
            "单号",
            "识别号",
            "卡号",
            "账号",
            "nummer",
            "nr",
            "numero",
            "rechnungsnummer",
            "belegnummer",
            "kundennummer",
            "steuernummer",
            "factuurnummer",
            "bonnummer",
        ),
    ),
    (
        ValueType.ADDRESS,
        (
            "address",
            "addr",
            "location",
            "street",
            "地址",
            "住址",
            "所在地",
            "anschrift",
            "adresse",
            "direccion",
            "domicilio",
            "indirizzo",
            "endereco",
            "morada",
            "adres",
        ),
    ),
    (
        ValueType.COMPANY,
        (
            "company",
            "merchant",
            "vendor",
            "seller",
            "supplier",
            "store",
            "shop",
            "business",
            "organization",
            "organisation",
            "hospital",
            "clinic",
            "issuer",
            "payee",
            "restaurant",
            "firm",
            "employer",
            "institution",
            "pharmacy",
            "bank",
            "公司",
            "商户",
            "商家",
            "销售方",
            "销方",
            "供应商",
            "单位",
            "医院",
            "机构",
            "药房",
            "开票方",
            "收款方",
            "firma",
            "geschaft",
            "geschafts",
            "handler",
            "haendler",
            "laden",
            "verkaufer",
            "lieferant",
            "societe",
            "entreprise",
            "magasin",
            "vendeur",
            "fournisseur",
            "empresa",
            "tienda",
            "comercio",
            "proveedor",
            "azienda",
            "negozio",
            "ditta",
            "fornitore",
            "loja",
            "fornecedor",
            "bedrijf",
            "winkel",
            "leverancier",
        ),
    ),
    (
        ValueType.PERSON,
        (
            "name of",
            "person",
            "patient",
            "customer name",
            "doctor",
            "physician",
            "cashier",
            "staff",
            "employee",
            "signed",
            "signature",
            "recipient",
            "attn",
            "attention",
            "姓名",
            "患者",
            "病人",
            "医生",
            "医师",
            "收款人",
            "开票人",
            "复核",
            "经办",
        ),
    ),
)


def fold_accents(text: str) -> str:
    """``text`` without accents ("Rückgeld" -> "Ruckgeld", "Espèces" -> "Especes"): receipts
    print labels with or without them, and OCR drops them often."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


_WORD = re.compile(r"[a-z]+|[^\x00-\x7f]+|#|%")


def _words(text: str) -> str:
    """Lower-cased words separated by single spaces, with a space on both ends."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", fold_accents(text))
    return " " + " ".join(_WORD.findall(spaced.lower().replace("_", " "))) + " "


# Types named anywhere in a description win outright: "phone number" is a phone, not an id.
_DOMINANT_TYPES = (ValueType.EMAIL, ValueType.URL, ValueType.PHONE)


# Romance, German and Dutch phrases put the head first and its complement after a
# connector ("numero de factura", "direccion de la tienda", "datum der rechnung").
_COMPLEMENT = re.compile(r" (?:de|di|du|des|del|della|dello|da|do|dos|das|van|von|der) ")


def _type_from_words(haystack: str) -> ValueType:
    # The head word comes last in English and Chinese noun phrases ("invoice number",
    # "due date", "合计金额"), so the cue that ends last decides; a longer cue breaks ties.
    best: tuple[int, int, ValueType] | None = None
    for value_type, cues in _TYPE_CUES:
        for cue in cues:
            needle = f" {cue} " if cue.isascii() else cue
            end = haystack.rfind(needle)
            if end < 0:
                continue
            if value_type in _DOMINANT_TYPES:
                return value_type
            rank = (end + len(needle), len(cue), value_type)
            if best is None or rank[:2] > best[:2]:
                best = rank
    return best[2] if best else ValueType.TEXT


def _type_from_text(text: str) -> ValueType:
    haystack = _words(text)
    head = _COMPLEMENT.split(haystack, maxsplit=1)
    if len(head) == 2:
        value_type = _type_from_words(head[0] + " ")
        if value_type is not ValueType.TEXT:
            return value_type
    return _type_from_words(haystack)


def detect_type(key: str, description: str, json_type: str | None = None) -> ValueType:
    """The type a key expects, from its description, else its name, else its JSON type."""
    for text in (description, key):
        value_type = _type_from_text(text)
        if value_type is not ValueType.TEXT:
            return value_type
    if json_type in ("number", "integer"):
        return ValueType.AMOUNT
    return ValueType.TEXT


# --- dates -------------------------------------------------------------------------------

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|"
    r"aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
# Month names and their printed abbreviations in the languages our users print (English,
# German, French, Spanish, Italian, Portuguese, Dutch), for dates printed day first.
_MONTH_WORDS = """
    january jan januar jänner janvier janv enero ene gennaio gen janeiro januari
    february feb februar février fevrier févr fevr febrero febbraio fevereiro fev februari
    march mar märz maerz marz mrz mär mars marzo março marco maart mrt
    april apr avril avr abril abr aprile
    may mai mayo maggio mag maio mei
    june jun juni juin junio giugno giu junho
    july jul juli juillet juil julio luglio lug julho
    august aug août aout agosto ago augustus
    september sept sep septembre septiembre setiembre settembre set setembro
    october oct oktober okt octobre octubre ottobre ott outubro out
    november nov novembre noviembre novembro
    december dec dezember dez décembre decembre déc diciembre dic dicembre dezembro
"""
_ANY_MONTH = (
    "(?:"
    + "|".join(sorted(set(_MONTH_WORDS.split()), key=lambda w: (-len(w), w)))
    + r")(?![^\W\d_])"
)
# A four-digit year may run straight into the time ("19-03-201818:08") on receipts.
_YEAR4 = r"(?:19|20)\d{2}(?:(?=\d{1,2}[:\uff1a]\d{2})|(?!\d))"
_YEAR = rf"(?:{_YEAR4}|\d{{2}}(?!\d)|\d{{2}}(?=\d{{1,2}}[:\uff1a]\d{{2}}))"


def _date_patterns(sep: str, after: str) -> tuple[re.Pattern[str], ...]:
    """Date shapes; ``sep`` captures the first separator and the second must repeat it."""
    return (
        re.compile(r"(?<!\d)(?:19|20)\d{2}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日?"),
        re.compile(rf"(?<!\d)(?:19|20)\d{{2}}{sep}\d{{1,2}}{after}(?P=sep){after}\d{{1,2}}(?!\d)"),
        re.compile(rf"(?<![\d.])\d{{1,2}}{sep}\d{{1,2}}{after}(?P=sep){after}{_YEAR}"),
        re.compile(
            rf"(?<![a-z0-9])\d{{1,2}}(?:st|nd|rd|th|er|º|\.)?[\s\-/.,]*(?:de\s+)?{_ANY_MONTH}\.?"
            rf"[\s\-/.,]*(?:de\s+)?{_YEAR}",
            re.IGNORECASE,
        ),
        re.compile(
            rf"(?<![a-z]){_MONTH}\.?\s*\d{{1,2}}(?:st|nd|rd|th)?,?\s*(?:{_YEAR4}|'?\d{{2}}(?!\d))",
            re.IGNORECASE,
        ),
    )


# Unlabelled text only trusts tight separators; next to a label, scan spacing is allowed
# ("12 /10 /98" on forms) because the label vouches for it.
_DATE_PATTERNS = _date_patterns(r"(?P<sep>[-/.])", "")
_LOOSE_DATE_PATTERNS = _date_patterns(r"\s?(?P<sep>[-/.])\s?", r"\s?")
# Eight digits that read as yyyymmdd; only trusted next to a date label.
_COMPACT_DATE = re.compile(r"(?<!\d)(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?!\d)")


def _plausible_date(text: str) -> bool:
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    if len(numbers) < 2:
        return True
    if len(numbers) == 3:
        first, second, third = numbers
        if first > 1900:
            return 1 <= second <= 12 and 1 <= third <= 31
        # Day-first and month-first layouts both exist; one of them must make sense.
        return 1 <= first <= 31 and 1 <= second <= 31 and (first <= 12 or second <= 12)
    return True


def find_dates(text: str, *, labelled: bool = False) -> list[tuple[int, str]]:
    """Date-shaped substrings of ``text`` with their offsets, in order of appearance."""
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for pattern in _LOOSE_DATE_PATTERNS if labelled else _DATE_PATTERNS:
        for match in pattern.finditer(text):
            span = match.span()
            if any(span[0] < end and start < span[1] for start, end in taken):
                continue
            value = match.group(0).strip(" ,.-/")
            if _plausible_date(value):
                found.append((span[0], value))
                taken.append(span)
    if labelled and not found:
        found.extend((m.start(), m.group(0)) for m in _COMPACT_DATE.finditer(text))
    found.sort()
    return found


# Between the two dates of a printed range ("1/13/2020 - 1/19/2020", "01.03.-31.03.2020",
# "du 01/03/2020 au 07/03/2020"): a dash or a word for "to".
_JOIN = r"(?:[-\u2013\u2014~]|to|thru|through|till|until|bis|au|al|a|hasta|tot|t/m|至|到)"
_RANGE_JOIN = re.compile(rf"^\s*{_JOIN}\s*$", re.IGNORECASE)
# A first date printed without its year, which it takes from the second date:
# "01.03.-31.03.2020", "1/13 - 1/19/2020" (day and month, or month and day, numeric);
# "March 1 to March 7, 2020", "March 1 - 7, 2020" (month first);
# "1. - 7. März 2020", "1 mars au 7 mars 2020" (day first).
_SHORT_RANGES = (
    re.compile(
        rf"(?<![\d./-])(?P<first>\d{{1,2}}(?P<sep>[./-])\d{{1,2}})(?P=sep)?\s*{_JOIN}\s*"
        rf"(?P<second>\d{{1,2}}(?P=sep)\d{{1,2}}(?P=sep)(?P<year>{_YEAR}))",
        re.IGNORECASE,
    ),
    re.compile(
        rf"(?<![a-z])(?P<month>{_MONTH})\.?\s*(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s*{_JOIN}\s*"
        rf"(?P<second>(?:{_MONTH}\.?\s*)?\d{{1,2}}(?:st|nd|rd|th)?,?\s*(?P<year>{_YEAR4}))",
        re.IGNORECASE,
    ),
    re.compile(
        rf"(?<![\w.])(?P<day>\d{{1,2}})(?:st|nd|rd|th|er|\.)?\s*(?P<month>{_ANY_MONTH}\.?)?\s*"
        rf"{_JOIN}\s*(?P<second>\d{{1,2}}(?:st|nd|rd|th|\.)?\s*(?:de\s+)?"
        rf"(?P<month2>{_ANY_MONTH})\.?\s*(?:de\s+)?(?P<year>{_YEAR4}))",
        re.IGNORECASE,
    ),
)


def _short_range(match: re.Match[str]) -> tuple[str, str]:
    """Both dates of a short range, each completed with what the other prints (the year,
    or the month of "March 1 - 7, 2020")."""
    groups = match.groupdict()
    year, second = groups["year"], match.group("second").strip()
    if "first" in groups:
        return f"{groups['first']}{groups['sep']}{year}", second
    if "month2" in groups:
        return f"{groups['day']} {(groups['month'] or groups['month2']).rstrip('.')} {year}", second
    if second[0].isdigit():
        second = f"{groups['month']} {second}"
    return f"{groups['month']} {groups['day']}, {year}", second


def find_date_ranges(text: str) -> list[tuple[int, str, str]]:
    """Printed ranges in ``text``: (offset, first date, second date), in order. A first
    date printed without its year ("01.03.-31.03.2020") takes the second's."""
    dates = find_dates(text, labelled=True)
    found = [
        (start, first, second)
        for (start, first), (second_at, second) in itertools.pairwise(dates)
        if _RANGE_JOIN.match(text[start + len(first) : second_at])
    ]
    for pattern in _SHORT_RANGES:
        for match in pattern.finditer(text):
            if any(start == match.start() for start, _first, _second in found):
                continue
            first, second = _short_range(match)
            if _plausible_date(second):
                found.append((match.start(), first, second))
    found.sort()
    return found


def find_date(text: str, *, labelled: bool = False) -> str | None:
    dates = find_dates(text, labelled=labelled)
    return dates[0][1] if dates else None


_TIME = re.compile(
    r"(?<!\d)([01]?\d|2[0-3])\s?[:\uff1a]\s?[0-5]\d(?:\s?[:\uff1a]\s?[0-5]\d)?(?:\s?[AaPp]\.?[Mm]\.?)?(?!\d)"
)


def find_time(text: str) -> str | None:
    match = _TIME.search(text)
    return match.group(0).strip() if match else None


# --- amounts -----------------------------------------------------------------------------

_CURRENCY = r"(?:RM|MYR|USD|US\$|S\$|SGD|EUR|GBP|CNY|RMB|HKD|IDR|RP|INR|RS\.?|\$|€|£|¥|￥|₹)"
# A money amount: optional sign and currency, thousands separators, two decimals (or none).
# Thousands are grouped by commas, by dots before a decimal comma ("1.234,56"), by
# apostrophes or no-break spaces ("1'234.50"), and by plain spaces only before a decimal
# comma ("1 234,56": a receipt's "1 100.00" is a quantity and a price).
_AMOUNT = re.compile(
    rf"(?<![\w.,/:])-?\s?{_CURRENCY}?\s?-?("
    r"\d{1,3}(?:,\d{3})+|\d{1,3}(?:\.\d{3})+(?=,\d\d)|\d{1,3}(?:['\u00a0\u202f\u2009]\d{3})+"
    r"|\d{1,3}(?: \d{3})+(?=,\d\d)|\d+"
    r")([.,]\d{2})?(?![\d/:%])(?![.,]\d)",
    re.IGNORECASE,
)
_GROUPING = re.compile(r"['\u00a0\u202f\u2009 ]")
_OCR_DIGITS = str.maketrans({"O": "0", "o": "0", "D": "0", "l": "1", "I": "1", "S": "5"})


def _repair_digits(text: str) -> str:
    """Undo common OCR letter-for-digit swaps inside numbers ("73.O0", "1l.50")."""
    return re.sub(
        r"(?<=[\d.,])[OoDlIS]+|[OoDlIS]+(?=[.,]\d)",
        lambda m: m.group(0).translate(_OCR_DIGITS),
        text,
    )


_GLUED_CURRENCY = re.compile(rf"(?<=[A-Za-z0-9:])(?={_CURRENCY}\s?\d)", re.IGNORECASE)


def find_amounts(text: str, *, decimals_only: bool = True) -> list[str]:
    """Money amounts in ``text`` as printed, without the currency, in order of appearance."""
    amounts: list[str] = []
    spaced = _GLUED_CURRENCY.sub(" ", _repair_digits(text))
    for match in _AMOUNT.finditer(spaced):
        whole, fraction = match.group(1), match.group(2)
        if decimals_only and not fraction:
            continue
        whole = _GROUPING.sub("", whole) if fraction or "'" in whole else whole.replace(" ", "")
        if not fraction and len(whole.replace(",", "")) > 7:
            continue  # long digit runs are identifiers, not prices
        sign = "-" if match.group(0).lstrip().startswith("-") else ""
        amounts.append(sign + whole + (fraction or ""))
    return amounts


def amount_value(text: str) -> float | None:
    """The number an amount string stands for: "1,234.50", "1.234,50", "1 234,50" and
    "1'234.50" -> 1234.5; "12,50" -> 12.5. The last separator followed by one or two digits
    is the decimal one; every other separator groups thousands."""
    cleaned = re.sub(r"[^\d.,\-]", "", text)
    if not re.search(r"\d", cleaned):
        return None
    sign = "-" if cleaned.startswith("-") else ""
    cleaned = cleaned.replace("-", "")
    last = max(cleaned.rfind(","), cleaned.rfind("."))
    decimals = len(cleaned) - last - 1
    if last >= 0 and (
        decimals in (1, 2)
        or (cleaned[last] == "." and cleaned.count(".") == 1 and "," not in cleaned)
    ):
        number = re.sub(r"[.,]", "", cleaned[:last]) + "." + cleaned[last + 1 :]
    else:
        number = re.sub(r"[.,]", "", cleaned)
    try:
        return float(sign + number)
    except ValueError:
        return None


_QUANTITY = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?![\w.,]*\d)")


def find_quantity(text: str) -> str | None:
    match = _QUANTITY.search(text)
    return match.group(0) if match else None


_PERCENT = re.compile(r"\d+(?:[.,]\d+)?\s?%")


def find_percent(text: str) -> str | None:
    match = _PERCENT.search(text)
    return match.group(0).replace(" ", "") if match else None


# --- contact details and identifiers -----------------------------------------------------

_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_URL = re.compile(r"(?:https?://|www\.)[\w\-.]+(?:\.[a-z]{2,})(?:/[\w\-./?%&=]*)?", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w])\+?\(?\d[\d\s\-()./]{6,}\d(?![\w])")


def find_email(text: str) -> str | None:
    match = _EMAIL.search(text)
    return match.group(0) if match else None


def find_url(text: str) -> str | None:
    match = _URL.search(text)
    return match.group(0) if match else None


def find_phone(text: str) -> str | None:
    for match in _PHONE.finditer(text):
        digits = re.sub(r"\D", "", match.group(0))
        if 7 <= len(digits) <= 15:
            return match.group(0).strip()
    return None


_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-/.#_]*\d[A-Za-z0-9\-/.#_]*|\d+")


def find_identifier(text: str) -> str | None:
    """A code-like token (letters and digits, at least one digit), else the whole text."""
    match = _IDENTIFIER.search(text)
    if match:
        return match.group(0).strip(".")
    stripped = text.strip()
    return stripped or None


# --- companies and addresses -------------------------------------------------------------

_COMPANY_SUFFIXES = (
    r"SDN\.?\s*BHD|[S5]/B|BHD|BERHAD|PTE\.?\s*LTD|PTY\.?\s*LTD|LTD|LIMITED|L\.?L\.?C|INC|INCORPORATED|"
    r"CORP(?:ORATION)?|CO\.|COMPANY|GMBH|AG|S\.?A\.?R\.?L|SARL|S\.?A|S\.?P\.?A|B\.?V|N\.?V|PLC|"
    r"LLP|KG|OY|AB|AS|A/S|SRL|S\.?L|ENTERPRISES?|TRADING|INDUSTRIES|HOLDINGS|GROUP|"
    r"SYARIKAT|PERNIAGAAN|RESTAURANT|RESTORAN|STORE|MART|PHARMACY|HOSPITAL|CLINIC|HOTEL|CAFE"
)
# OCR reads "BHD" as "BHU", "8HD" or "BH0" often enough that the misreads are worth a pattern.
_COMPANY_SUFFIX = re.compile(
    rf"(?<![A-Z0-9])(?:{_COMPANY_SUFFIXES}|SDN\.?\s*[B8][HN][DUO0])(?![A-Z])", re.IGNORECASE
)
_CJK_COMPANY = re.compile(
    r"(有限公司|有限责任公司|股份公司|公司|集团|商行|商店|超市|药房|药店|医院|诊所|酒店|餐厅)"
)


def company_strength(text: str) -> int:
    """2 for a legal-form suffix (SDN BHD, LTD, GMBH, 有限公司), 1 for a trade word, else 0."""
    if re.search(
        r"(?<![A-Z])(SDN\.?\s*[B8][HN][DUO0]|BHD|BERHAD|LTD|LIMITED|INC|LLC|GMBH|PLC|LLP|"
        r"CORP|CORPORATION|[S5]/B|PTE|PTY|SARL|SRL|OHG|LDA|S\.R\.[LI]|S\.P\.A|S\.A\.S|S\.A\.|S\.L\.|"
        r"B\.V|N\.V|E\.K\.)(?![A-Z])",
        text,
        re.IGNORECASE,
    ) or re.search(r"有限公司|有限责任公司|股份公司", text):
        return 2
    if _COMPANY_SUFFIX.search(text) or _CJK_COMPANY.search(text):
        return 1
    return 0


def repair_company(text: str) -> str:
    """Fix OCR misreads of legal-form suffixes and drop a trailing registration number."""
    fixed = re.sub(r"(?<![A-Z])SDN\.?\s*[B8][HN][DUO0](?![A-Z])", "SDN BHD", text, flags=re.I)
    fixed = re.sub(r"(?<![\w/])5/B(?![\w/])", "S/B", fixed)
    # "S.r.I.": OCR reads the l of S.r.l. as a capital I.
    fixed = re.sub(
        r"(?<![A-Za-z])S\.([rR])\.I(?![A-Za-z])",
        lambda m: f"S.{m.group(1)}.{'l' if m.group(1) == 'r' else 'L'}",
        fixed,
    )
    fixed = re.sub(
        r"\s*[(\[]?\s*(?:CO\.?\s*)?(?:REG\.?\s*(?:NO)?\.?)?[:\s]*\d{4,}\s?-?\s?[A-Z]?\b\s*[)\]]?.*$",
        "",
        fixed,
        flags=re.I,
    )
    # An opening bracket cut off at the edge of the line ("99 SPEED MART S/B (S").
    fixed = re.sub(r"\s*\([^()]{0,3}$", "", fixed)
    fixed = fixed.strip(" ,.;:-")
    # A dotted legal form keeps its last dot ("S.L.", "B.V.", "S.r.l.").
    if re.search(r"(?<![^\W\d_])(?:[A-Za-z]\.){1,3}[A-Za-z]{1,2}$", fixed) and text.rstrip(
        " ,;:-"
    ).endswith("."):
        fixed += "."
    return fixed


_STREET_WORDS = (
    r"JALAN|JLN|LORONG|LRG|PERSIARAN|LEBUH|TAMAN|TMN|KAMPUNG|KG|BANDAR|BDR|PUSAT|"
    r"STREET|ST|ROAD|RD|AVENUE|AVE|BOULEVARD|BLVD|LANE|LN|DRIVE|DR|HIGHWAY|HWY|WAY|PLACE|"
    r"SQUARE|SQ|COURT|CT|TERRACE|PARKWAY|PLAZA|BUILDING|BLDG|TOWER|BLOCK|BLK|LEVEL|FLOOR|"
    r"SUITE|STE|UNIT|LOT|P\.?O\.?\s*BOX|STRASSE|STRAßE|RUE|CALLE|VIA|INDUSTRIAL|ESTATE|"
    r"CENTRE|CENTER|MALL|COMPLEX|DISTRICT|CITY|STATE|SECTION|SEKSYEN|PARK|WISMA|MENARA"
)
_STREET = re.compile(
    rf"(?<![A-Z])(?:{_STREET_WORDS}|AVENIDA|RUA|PRA[CÇ]A|VIALE|PIAZZA|CORSO|LARGO|PLAZA|"
    r"PASEO|CARRER|CHEMIN|PLACE|QUAI|ROUTE|IMPASSE|STRAAT|LAAN|PLEIN)(?![A-Z])"
    # German and Dutch streets end a compound word and take a house number: "Hauptstr. 5".
    r"|[A-ZÄÖÜ][a-zäöüß]+(?:stra(?:ss|ß)e|str\.|weg|platz|allee|gasse|ring|damm|ufer|"
    r"straat|laan|gracht|plein|kade|singel)\s*\d",
    re.IGNORECASE,
)
# German streets named by a preposition and a place, with a house number: "Am Rathaus 9",
# "An der Mühle 3a", "Zur Post 1" (case matters: "AM 12" is a time).
_PLACE_STREET = re.compile(
    r"^\W*(?:Am|An\s+der|An\s+den|Auf\s+der|Auf\s+dem|Im|In\s+der|In\s+den|Zum|Zur|"
    r"Hinter\s+der|Unter\s+den|Vor\s+dem|Beim)\s+[A-ZÄÖÜ][\wäöüß.\-]+(?:\s+[\wäöüß.\-]+)?"
    r"\s+\d{1,4}\s?[a-z]?\b"
)
_POSTCODE = re.compile(
    r"(?<![\w\-/.])(?:\d{5}|\d{6}|\d{4}(?=\s+[A-Z])|\d{5}-\d{4}|\d{4}-\d{3}|"
    r"[A-Z]\d[A-Z]\s?\d[A-Z]\d)(?![\d\-/.])"
)
_CJK_ADDRESS = re.compile(r"[省市区县镇乡村路街道巷号楼室弄]")


def address_strength(text: str) -> int:
    """How much a line looks like part of a postal address (0 = not at all)."""
    score = 0
    if (
        _STREET.search(text)
        or _PLACE_STREET.match(text)
        or re.match(r"\W*(?:NO|LOT|UNIT)\b\W*\d", text, re.IGNORECASE)
    ):
        score += 2
    if _POSTCODE.search(text):
        score += 2
    # A comma between parts ("NO 12, JALAN"), not a decimal comma ("2,49").
    if re.search(r"\d", text) and re.search(r"(?<!\d),|,(?!\d)", text):
        score += 1
    if len(_CJK_ADDRESS.findall(text)) >= 2:
        score += 2
    return score


def has_postcode(text: str) -> bool:
    return bool(_POSTCODE.search(text))
