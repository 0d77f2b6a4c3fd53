"""The issuer block at the top of receipts and invoices: company name and address.

Receipts rarely label these. The name is the top-most line carrying a legal-form suffix
(SDN BHD, LTD, GMBH, 有限公司), else the first prominent line; the address is the run of
lines after it up to the first phone, registration, tax or date line. A store or chain name
is what a reader gives instead: the brand, without legal form or branch. Logos are often
pictures and headers mix chain, branch and owner, so the store's name is voted on by every
place the receipt prints it (logo line, thanks line, web domain, legal owner), and a company
name without a legal form in the header asks the same places; slogans and headings
("Gut und günstig", "Kassenbon") are never names, and no name is better than a wrong one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from extraction.engine.layout import Page, Row
from extraction.engine.values import (
    address_strength,
    company_strength,
    find_dates,
    fold_accents,
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
    r"CASHIER|DATE|TIME|TABLE|BILL|DOC|ORDER|SLIP|TERMINAL|POS|OPEN|HOURS|ID\s*NO|"
    # Tax and register numbers in Europe: Steuernummer, USt-IdNr, UID, HRB, SIRET, TVA,
    # P.IVA, CIF/NIF, BTW, KvK.
    r"ST\.?\s?-?\s?NR|STEUER\w*|UST\w*|UID|HR[AB]|SIRET|SIREN|TVA|P\.?\s?IVA|CIF|NIF|BTW|KVK)"
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


def _printed_company(page: Page, rows: list[Row]) -> str | None:
    following = page.rows[rows[-1].index + 1 : rows[-1].index + 2]
    if following and _BRANCH.match(following[0].text):
        rows = [*rows, following[0]]
    name = repair_company(_LABEL_PREFIX.sub("", " ".join(r.text for r in rows)))
    return name or None


def company_name(page: Page) -> str | None:
    """The issuer's name as printed, with suffix misreads repaired. Without a legal-form
    line in the header (common on European receipts) the whole receipt is asked: a legal
    owner printed anywhere, else the store's name, else a labelled owner; never a slogan."""
    rows = company_rows(page)
    if rows and any(company_strength(r.text) == 2 for r in rows):
        return _printed_company(page, rows)
    header = _printed_company(page, rows) if rows else None
    if header and _names_something(" ".join(r.text for r in rows)):
        return header
    legal, people = _owners(page)
    if legal:
        return legal[0]
    vote = _best_vote(_store_votes(page))
    if vote is not None:
        return vote.name
    return people[0] if people else None


# Legal forms, in the languages receipts print them, cut from a store name's end.
_LEGAL_FORM = re.compile(
    r"(?:[\s,]+|(?<=\)))(?:SDN\.?\s*[B8][HN][DUO0]|SDN|BHD|BERHAD|PTE\.?\s*LTD|PTY\.?\s*LTD|"
    r"LTD|LIMITED|INC|"
    r"L\.?L\.?C|CORP(?:ORATION)?|CO\.|PLC|LLP|(?:GMBH|AG|SE|UG)(?:\s*[&+]\s*CO\.?\s*(?:KG|OHG))?|KG|OHG|"
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


_TRADE_TAIL = re.compile(
    r"(?:[\s-]+(?:handels|handel|vertriebs|vertrieb|dienstleistungs|verwaltungs|betriebs|"
    r"markt|m(?:ä|a|ae)rkte|holding|gruppe|group|deutschland)(?:-?(?:SE|AG|GmbH|KG))?"
    r"|\s*&\s*(?:co\.?)?)+$",
    re.IGNORECASE,
)
_FULL_WIDTH = str.maketrans("\uff08\uff09\uff1a", "():")


def _cleaned_store(name: str) -> str:
    """``name`` without a label, branch or legal form, when something is left of it."""
    name = repair_company(_LABEL_PREFIX.sub("", name.translate(_FULL_WIDTH)))
    owner = _OWNER_LABEL.search(name)
    if owner and owner.start() > 0:
        name = name[: owner.start()]  # "EDEKA Müller, Inh. Max Müller e.K."
    for pattern in (_BRANCH_TAIL, _LEGAL_FORM, _BRANCH_TAIL):
        cut = pattern.sub("", name).strip(" ,.-")
        if _letters(cut) >= 2:
            if pattern is _LEGAL_FORM and cut != name:
                # A legal name's trade words are not the brand: "REWE Markt GmbH",
                # "… Dienstleistungs-SE & Co. oHG".
                cut = _TRADE_TAIL.sub("", cut).strip(" ,.-") or cut
            name = cut
    return name.strip()


# --- the whole receipt's word on who issued it --------------------------------------------
#
# A logo is often a picture, and the header mixes chain, branch and legal owner, so the
# name is gathered from every place a receipt prints it: the prominent header line, a
# thanks or welcome line ("Vielen Dank für Ihren Einkauf bei …", "Ihr …-Team"), the web
# or e-mail domain, and a legal-owner line ("Betreiber: … GmbH", "… S.A.R.L."). Each is a
# vote; votes from different places that share a word back each other, and the name with
# the most support wins. Where nothing names the store, there is no name: a slogan is not
# one.

# Thanks and welcome phrases, up to where the name follows.
_THANKS = re.compile(
    r"(?<![^\W\d_])(?:"
    r"(?:vielen\s+|herzlichen\s+|besten\s+)?dank(?:e|en)?(?:\s+sch(?:ö|o|oe)n)?\s+"
    r"f(?:ü|u|ue)r\s+(?:ihren|deinen|euren|den|ihre|deine|ihr)\s+(?:einkauf|besuch|bestellung)"
    r"(?:\s+(?:bei|beim|im|in\s+der|in))?"
    r"|thanks?(?:\s+you)?\s+for\s+(?:shopping|dining|visiting|choosing|"
    r"your\s+(?:visit|purchase|custom|order|business))(?:\s+(?:at|with|to|in))?"
    r"|merci\s+(?:de|pour|d['\u2019])\s*(?:votre|vos|avoir\s+choisi)"
    r"(?:\s+(?:visite|achats?|confiance|fid[ée]lit[ée]))?(?:\s+(?:chez|[àa]|au|dans))?"
    r"|bedankt\s+voor\s+(?:uw|je|jouw)\s+(?:aankoop|bezoek|boodschappen)(?:\s+(?:bij|aan|in))?"
    r"|gracias\s+por\s+(?:su|tu)\s+(?:compra|visita)(?:\s+(?:en|a))?"
    r"|gracias\s+por\s+(?:comprar\s+en|elegir(?:nos)?)"
    r"|grazie\s+per\s+(?:(?:il\s+)?(?:suo|tuo|vostro)\s+acquisto|la\s+(?:sua\s+)?visita|"
    r"aver\s+(?:acquistato|scelto))(?:\s+(?:da|presso|in|al|alla|a))?"
    r"|(?:herzlich\s+)?willkommen\s+(?:bei|im|in\s+der)|welcome\s+to|"
    r"bienvenue\s+(?:chez|[àa]|au)|welkom\s+(?:bij|in)|bienvenid[oa]s?\s+a|"
    r"benvenut[oi]\s+(?:da|al|in|a)"
    r")(?![^\W\d_])\s*[:,]?\s*",
    re.IGNORECASE,
)
# The last word of a thanks phrase after which a name follows (not "Danke für Ihren Besuch").
_NAME_FOLLOWS = frozenset(
    "bei beim im in der at with to visiting choosing chez à a au dans choisi bij aan en "
    "elegir elegirnos da presso al alla scelto".split()
)
# "Ihr REWE-Team", "Your Tesco team", "Das Team von …", "L'équipe …", "El equipo de …".
_TEAM = re.compile(
    r"(?<![^\W\d_])(?:ihr|ihre|euer|dein|your|the|uw|het|jouw|je)\s+(?P<before>\S.*?)[\s-]*"
    r"team(?![^\W\d_])"
    r"|(?<![^\W\d_])(?:team|staff)\s+(?:von|vom|der|des|van|of)\s+(?P<after>\S.*)"
    r"|(?<![^\W\d_])(?:[ée]quipe|equipo|squadra)\s+(?:de\s+|du\s+|d['\u2019]\s*|di\s+|del\s+)?"
    r"(?P<romance>\S.*)",
    re.IGNORECASE,
)
# Leading words of a thanked name that are not part of it: "bei Ihrem EDEKA-Markt".
_NAME_LEAD = re.compile(
    r"^(?:(?:ihrem|ihrer|ihren|ihr|unserem|unserer|unseren|unser|dem|der|den|die|das|the|"
    r"our|your|votre|notre|vos|nos|le|la|les|l['\u2019]|uw|onze|het|su|nuestra|nuestro|el|il|lo|"
    r"nostro|nostra|vostro|vostra)\s+)+",
    re.IGNORECASE,
)
# Where a thanked name ends: sentence punctuation, or a farewell joined by "and".
_NAME_END = re.compile(
    r"\s*(?:[!?;:|]|[.,](?=\s|$)|\s[-\u2013]\s).*$"
    r"|\s+(?:und|and|et|en|y|e)\s+(?:bis|auf|besuchen|beehren|kommen|see|hope|come|have|"
    r"à|a|au|tot|hasta|vuelva|arrivederci|torn\w*)(?![^\W\d_]).*$",
    re.IGNORECASE,
)
# Words that only say where to buy ("im Markt", "bei uns"): no name on their own.
_GENERIC = frozenset(
    "uns us nous ons nosotros noi ihnen you vous markt supermarkt filiale geschaft geschaeft "
    "laden store shop market supermarket magasin winkel tienda negozio team service kunden "
    "kundenservice customer support center centre gmbh co kg ag ohg ek und and the der die "
    "das am im zum zur de la le les du des el il van het een bei www online sarl sa sl bv nv "
    "srl spa ltd inc handels vertriebs vertrieb gruppe group".split()
)
_PARTICLES = frozenset(
    "de la le les du des d l van von der den het da di del della dos das do y e et und and "
    "am im zum zur an auf op in of the bei chez au aux".split()
)
# Receipt headings and greetings in the languages receipts print them: not names.
_NOT_A_NAME = re.compile(
    r"^\W*(?:(?:herzlich\s+)?willkommen|welcome|bienvenue|bienvenid[oa]s?|benvenut[oi]|welkom|"
    r"kassen(?:bon|beleg|zettel)|kunden(?:beleg|quittung)|beleg|bon|quittung|rechnung|"
    r"barverkauf|kopie|duplikat|storno|ticket(?:\s+de\s+(?:caisse|compra))?|re[çc]u|facture|"
    r"factura(?:\s+simplificada)?|recibo|scontrino(?:\s+fiscale)?|documento\s+commerciale|"
    r"ricevuta|kassabon|bonnetje|kassaticket|kwitantie|factuur)\W*$",
    re.IGNORECASE,
)
# Tax and register numbers in European receipts' words: a line with one is not a name.
_TAX_LABEL = re.compile(
    r"(?<![^\W\d_])(?:u?st(?:[-.\s]*(?:id|ident))?[-.\s]*(?:nr|no)|ust|st[-.\s]*nr|steuer\w*|"
    r"mwst|tva|n°\s*tva|siret|siren|rcs|nif|cif|p\.?\s*iva|partita\s+iva|iva|btw|kvk|uid|"
    r"hrb|hra|amtsgericht|registergericht|vat|gst)(?![^\W\d_])",
    re.IGNORECASE,
)
# "Inh. …", "Betreiber: …", "exploité par …": the legal owner's line.
_OWNER_LABEL = re.compile(
    r"(?<![^\W\d_])(?:inh(?:aber(?:in)?)?\.?|betreiber(?:in)?|betrieben\s+von|"
    r"eigent(?:ü|u|ue)mer(?:in)?|propri[ée]taire|exploit[ée]e?\s+par|g[ée]r[ée]e?\s+par|titular|"
    r"eigenaar|uitgebaat\s+door|titolare|gestito\s+da|gestore|operated\s+by|owned\s+by|"
    r"proprietor)(?![^\W\d_])\s*[:.]?\s*",
    re.IGNORECASE,
)
_PARTS = re.compile(r"\s*(?:[,;·]|\s[-\u2013|]\s)\s*")
# A slogan's grammar: sentence punctuation, a clause after a comma, or a pronoun first.
_LOWER = "a-zäöüßàâçéèêëîïôûùœáíóúñì"
_SENTENCE = re.compile(
    rf"[!?]|(?-i:[{_LOWER}]{{2}}\.\s*$|,\s+[{_LOWER}])"
    r"|^\W*(?:wir|ich|sie|du|we|you|nous|vous|wij|jij|nosotros|noi)(?![^\W\d_])",
    re.IGNORECASE,
)


def _is_slogan(text: str) -> bool:
    """A line that reads as a phrase, not a name ("Gut und günstig", "Besser leben.")."""
    if _SENTENCE.search(text.replace("\u2019", "'")) and not _LEGAL_FORM.search(text):
        return True
    words = re.findall(r"[^\W\d_][^\W_]*", text)
    content = [w for w in words[1:] if w.lower() not in _PARTICLES and len(w) >= 3]
    lower = [w for w in content if w[0].islower()]
    return bool(content) and 2 * len(lower) > len(content)


# A price ("1,99", "12.50"): the line is an item or a total.
_PRICE = re.compile(r"(?<![\d.,])\d{1,6}[.,]\d{2}(?![\d.,%])")


def _names_something(text: str) -> bool:
    """Whether a header line can be a name: not a heading, slogan, thanks, tax, price or
    branch line ("Filiale 0815")."""
    named = _BRANCH_TAIL.sub("", _LABEL_PREFIX.sub("", text))  # "Inv No.: 7819F712"
    return bool(re.search(r"(?<![^\W_])[^\W\d_]{2,}(?![^\W_])", named)) and not (
        _NOT_A_NAME.match(text)
        or _PRICE.search(text)
        or _is_heading(text)
        or _THANKS.search(text)
        or _TAX_LABEL.search(text)
        or _is_slogan(text)
    )


_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


def _keys(text: str) -> frozenset[str]:
    """The words of ``text`` as they are compared across sources (case, accents and
    spacing aside; "Müller" is also "mueller" as domains spell it), alone and in runs."""
    words = re.findall(r"[^\W_]+", text.lower())
    keys: set[str] = set()
    for spelled in (
        [w.translate(_TRANSLITERATION) for w in words],
        [fold_accents(w) for w in words],
    ):
        keys.update(w for w in spelled if len(w) >= 2 and w not in _GENERIC)
        # Words run together: "ALDI SÜD" is aldi-sued, "DOMINO'S" is dominos.
        for first in range(len(spelled)):
            for last in range(first + 2, min(first + 4, len(spelled)) + 1):
                joined = "".join(spelled[first:last])
                if len(joined) >= 3 and not _GENERIC.issuperset(spelled[first:last]):
                    keys.add(joined)
        if len(spelled) > 1 and not keys:
            keys.add("".join(spelled))  # a name of common words only: "THE STORE"
    return frozenset(keys)


def _share_a_name(first: frozenset[str], second: frozenset[str]) -> bool:
    """Whether two names share a word, or one's word starts the other's ("edeka" and
    "edekamueller", "family" and "familymart")."""
    if first & second:
        return True
    return any(
        len(a) >= 4 and len(b) >= 4 and (a.startswith(b) or b.startswith(a))
        for a in first
        for b in second
    )


@dataclass(frozen=True, slots=True)
class _Vote:
    """One place on the receipt that names the store, and how much it is trusted."""

    name: str
    source: str
    weight: float
    keys: frozenset[str]


# How far each place is trusted alone; ties go to the earlier one in this order.
_SOURCES = ("header", "named", "web", "owner")
_PROMINENT, _PLAIN_HEADER, _NAMED, _WEB, _OWNER = 2.6, 1.5, 3.0, 2.5, 1.2
_NAMED_AFTER_ARTICLE = 1.8
_ARTICLE = re.compile(
    r"(?:the|der|die|das|dem|den|le|la|les|l['\u2019]|het|de|el|il|lo)(?:\s|(?<=['\u2019]))",
    re.IGNORECASE,
)


def _header_vote(page: Page) -> _Vote | None:
    """The logo line: the tallest name-like line of the header, else the issuer's line."""
    header = [
        r
        for r in page.rows[:8]
        if _eligible_name(r.text)
        and address_strength(r.text) < 2
        and not _BRANCH.match(r.text)
        and _names_something(r.text)
        and not _OWNER_LABEL.match(r.text.strip())
    ]
    rows = [
        r
        for r in company_rows(page)
        if _names_something(r.text) and not _OWNER_LABEL.match(r.text.strip())
    ]
    if header:
        tallest = max(header, key=lambda r: (r.height, -r.index))
        if not rows or tallest.height > 1.2 * rows[0].height or tallest.index <= rows[0].index:
            rows = [tallest]
    if not rows:
        return None
    name = _cleaned_store(" ".join(r.text for r in rows))
    if not name or not _keys(name):
        return None
    prominent = rows[0].height > 1.25 * page.line_height
    return _Vote(name, "header", _PROMINENT if prominent else _PLAIN_HEADER, _keys(name))


def _thanked_name(tail: str) -> str | None:
    """The name at the start of ``tail`` (the words after "Danke für Ihren Einkauf bei")."""
    name = _NAME_LEAD.sub("", _NAME_END.sub("", tail.strip()).strip(" \"'„“”»«"))
    words = name.split()
    if words and (words[0][0].isupper() or words[0][0].isdigit()):
        # "EDEKA Müller vous remercie": the name is the run of capitalised words.
        kept: list[str] = []
        for at, word in enumerate(words):
            capital = word[0].isupper() or word[0].isdigit() or word == "&"
            joins = (
                word.lower() in _PARTICLES and at + 1 < len(words) and words[at + 1][0].isupper()
            )
            if not (capital or joins):
                break
            kept.append(word)
        name = " ".join(kept)
    name = _cleaned_store(name.strip(" \"'„“”»«-"))
    plain = {w.lower() for w in re.findall(r"[^\W_]+", name)}
    if _letters(name) < 2 or _GENERIC.issuperset(plain) or _NOT_A_NAME.match(name):
        return None  # "bei uns", "the customer service team"
    return name


def _named_votes(page: Page) -> list[_Vote]:
    """Names after a thanks or welcome phrase, or before "Team", anywhere on the page."""
    votes = []
    for row in page.rows:
        text = row.text
        name, tail = None, ""
        thanks = _THANKS.search(text)
        if thanks:
            tail = text[thanks.end() :]
            last = thanks.group(0).split()[-1].strip(":,").lower()
            if last in _NAME_FOLLOWS:
                following = page.rows[row.index + 1 : row.index + 2]
                if not _letters(tail) and following:
                    tail = following[0].text  # the name printed on the next line
                name = _thanked_name(tail)
        team = None if name else _TEAM.search(text)
        if team:
            tail = team.group("before") or team.group("after") or team.group("romance")
            name = _thanked_name(tail)
        if name:
            # "Welcome to the Family": a name after an article may be a common noun.
            weight = _NAMED_AFTER_ARTICLE if _ARTICLE.match(tail.strip()) else _NAMED
            votes.append(_Vote(name, "named", weight, _keys(name)))
    return votes


_TLDS = r"de|at|ch|fr|be|nl|lu|es|it|pt|eu|uk|ie|dk|se|fi|pl|cz|com|net|org|info|biz|shop"
_LABEL = r"[a-z0-9äöüß](?:[a-z0-9äöüß-]*[a-z0-9äöüß])?"
# A web or mail address; one without "www", "@" or "http" only in lower case ("dm.de"),
# so "Reg.No" or "Nr.DE" is none.
_WEB_ADDRESS = re.compile(
    rf"(?i:(?<![\w.@-])(?:https?://)?www\d?\.|@)((?i:{_LABEL}\.)+)(?i:{_TLDS})(?![\w-])"
    rf"|(?<![\w.@/-])((?:{_LABEL}\.)+)(?:{_TLDS})(?![\w-])"
)
# Mail and social platforms, and second levels of country domains: nobody's store name.
_NOT_A_DOMAIN_NAME = frozenset(
    "www gmail googlemail gmx web t-online yahoo hotmail outlook live icloud me aol posteo "
    "freenet arcor mail email orange wanadoo free sfr laposte libero tiscali virgilio alice "
    "hetnet ziggo kpn telefonica movistar facebook instagram twitter youtube tiktok google "
    "linkedin whatsapp co com org net gov ac".split()
)
_WEB_WORDS = frozenset("online shop web www info digital app store".split())
# A domain on a line about a till maker, a survey, points or jobs belongs to someone else.
_OTHER_PARTY = re.compile(
    r"kassen(?:system|software)|software|powered|erstellt\s+mit|system\s+(?:by|von)|punkte|"
    r"points|coupon|gewinnspiel|umfrage|survey|feedback|bewert|karriere|career|jobs?\b|"
    r"newsletter|zahlungsdienst",
    re.IGNORECASE,
)


def _web_labels(text: str) -> list[str]:
    """The name part of each web or mail domain on a line ("lidl" of "www.lidl.de")."""
    if re.search(r"www|@|https?:", text, re.IGNORECASE):
        text = re.sub(r"\s*([.@])\s*(?=\w)", r"\1", text)  # OCR spaces a web address out
    labels = []
    for match in _WEB_ADDRESS.finditer(text):
        host = match.group(1) or match.group(2)
        parts = [p for p in host.lower().split(".") if p]
        while parts and parts[-1] in _NOT_A_DOMAIN_NAME:
            parts.pop()
        if parts and not parts[-1].isdigit() and len(parts[-1]) >= 2:
            labels.append(parts[-1])
    return labels


# What is left of a web or mail address OCR misread ("www.dominos...my/terms").
_WEB_CHUNK = re.compile(r"\S*(?:www\.|@|https?:)\S*", re.IGNORECASE)


def _label_keys(label: str, whole: bool = False) -> frozenset[str]:
    """A domain name's keys: whole, without web words ("netto-online" is netto), by its
    parts unless ``whole``, and with "ue" for "ü" read back as "u" (OCR often drops the
    dots of "SÜD")."""
    parts = [p for p in label.split("-") if p]
    kept = [p for p in parts if p not in _WEB_WORDS] or parts
    keys = {"".join(parts), "".join(kept)}
    if not whole:
        keys.update(p for p in kept if p not in _GENERIC)
    return frozenset(keys | {re.sub(r"(?<=[aou])e", "", k) for k in keys})


def _printed_as(page: Page, label: str) -> str | None:
    """The words on the page spelling a domain's name ("ALDI SÜD" for aldi-sued), as
    printed, from the tallest line that has them."""
    wanted = _label_keys(label, whole=True)
    found: list[tuple[float, int, str]] = []
    for row in page.rows:
        text = _WEB_CHUNK.sub(" ", _WEB_ADDRESS.sub(" ", row.text))
        tokens = list(re.finditer(r"[^\W_]+", text))
        for first in range(len(tokens)):
            for last in range(first, min(first + 4, len(tokens))):
                words = [t.group(0).lower() for t in tokens[first : last + 1]]
                spelled = {
                    "".join(w.translate(_TRANSLITERATION) for w in words),
                    "".join(fold_accents(w) for w in words),
                }
                if spelled & wanted:
                    span = text[tokens[first].start() : tokens[last].end()]
                    found.append((-row.height, row.index, span))
    return min(found)[2] if found else None


def _web_votes(page: Page) -> list[_Vote]:
    """The domain of the store's web site or mail address, as the page prints that name."""
    seen: dict[str, int] = {}
    for row in page.rows:
        if _OTHER_PARTY.search(row.text):
            continue
        for label in _web_labels(row.text):
            seen[label] = seen.get(label, 0) + 1
    votes = []
    for label, count in seen.items():
        name = _printed_as(page, label) or label
        keys = _keys(name) | _label_keys(label)
        votes.append(_Vote(name, "web", _WEB + 0.2 * min(count - 1, 2), frozenset(keys)))
    return votes


def _owners(page: Page) -> tuple[list[str], list[str]]:
    """Legal owners printed anywhere: names with a legal form (incl. a labelled owner's),
    and labelled owners without one (a person: "Inh. Max Mustermann")."""
    legal: list[str] = []
    people: list[str] = []
    for row in page.rows:
        if _THANKS.search(row.text):
            continue
        for part in _PARTS.split(row.text):
            labelled = _OWNER_LABEL.search(part)
            if labelled:
                part = part[labelled.end() :]
            tax = _TAX_LABEL.search(part)
            if tax:
                # "Müller Lebensmittel GmbH USt-IdNr DE…": the owner of the number.
                part = part[: tax.start()].strip(" ,;:-(")
            # "… GmbH & Co. KG": KG is a legal form here, not a Malaysian kampung.
            if not _eligible_name(part) or address_strength(_LEGAL_FORM.sub("", part)) >= 2:
                continue
            if part.count("(") != part.count(")"):
                continue  # a name broken over lines; the header rules read those
            if _LEGAL_FORM.search(part):
                legal.append(repair_company(part))
            elif labelled and not _is_slogan(part):
                people.append(part.strip(" ,.;:"))
    return legal, people


def _owner_votes(page: Page) -> list[_Vote]:
    votes = []
    for legal in _owners(page)[0]:
        name = _cleaned_store(legal)
        if _keys(name) and not _is_slogan(name):
            votes.append(_Vote(name, "owner", _OWNER, _keys(name)))
    return votes


def _best_vote(votes: list[_Vote]) -> _Vote | None:
    """The vote with the most support: its own weight and, from each other source, the
    weight of the strongest vote sharing a word with it."""
    best: tuple[float, int, _Vote] | None = None
    for vote in votes:
        support = vote.weight
        for source in _SOURCES:
            if source != vote.source:
                support += max(
                    (
                        v.weight
                        for v in votes
                        if v.source == source and _share_a_name(v.keys, vote.keys)
                    ),
                    default=0.0,
                )
        rank = (support, -_SOURCES.index(vote.source))
        if best is None or rank > best[:2]:
            best = (*rank, vote)
    return best[2] if best else None


def _store_votes(page: Page) -> list[_Vote]:
    header = _header_vote(page)
    return [
        *([header] if header else []),
        *_named_votes(page),
        *_web_votes(page),
        *_owner_votes(page),
    ]


def store_name(page: Page) -> str | None:
    """A store or chain name as a reader gives it: the brand, without legal form or branch,
    from what the whole receipt says (header, thanks line, web domain, legal owner), the
    name most places agree on; None when nothing but slogans and headings is printed."""
    vote = _best_vote(_store_votes(page))
    return vote.name if vote else None


def _postcode_then_place(text: str) -> bool:
    """A postcode followed by a place name on the same line usually ends an address."""
    match = re.search(r"(?<![\d\-/.])\d{4,6}(?![\d\-/.])\s*,?\s*[A-Za-z]{3,}", text)
    return bool(match) and has_postcode(text)


# What comes after the issuer block on a receipt, never part of an address: a currency
# heading over the prices ("EUR") or an item line ending in its price ("Brot 2,49 A").
_RECEIPT_BODY = re.compile(
    r"^\W*(?:EUR|CHF|GBP|USD|SEK|NOK|DKK|PLN|CZK|€|£|\$)\W*$"
    r"|\d[.,]\d{2}(?:\s*(?:€|EUR|[A-Z]|\*){0,2})?\s*$",
    re.IGNORECASE,
)


def _stops_address(text: str) -> bool:
    return bool(
        _ADDRESS_STOP.search(text)
        or find_dates(text)
        or _is_heading(text)
        or (_RECEIPT_BODY.search(text) and address_strength(text) < 2)
    )


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
