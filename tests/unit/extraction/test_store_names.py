"""Store and company names on European receipts, from what the whole receipt says: the
logo line, a thanks line in the footer, the web or mail domain, and the legal owner.
Pages are built from text lines (no OCR), so each receipt here reads in milliseconds."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from extraction.contract import Scene
from extraction.engine.document import render_content
from extraction.engine.layout import Page, build_page
from extraction.engine.ocr import OcrLine

# A printed line, or one printed bigger (a logo): (text, height in pixels).
Line = str | tuple[str, int]
STORE_PROMPT = '{"store": "Store name", "company": "Company name", "total": "Total amount"}'
ITEMS = [
    "Vollkornbrot 2,49",
    "Bergkäse 12,80",
    "Bananen lose 1,99",
    "SUMME EUR 17,28",
    "Gegeben BAR 20,00",
    "Rückgeld 2,72",
    "14.03.2024 18:22 Kasse 2 Bon 4711",
]
# What a receipt whose logo is a picture shows at the top: a branch and an address.
NO_LOGO = ["Filiale 0815", "Lindenallee 12", "20095 Hamburg", "Tel. 040 1234567"]


def _page(lines: Sequence[Line]) -> Page:
    """A page of recognised lines one under the other; ``(text, height)`` for a line
    printed bigger than the usual 28 pixels (a logo)."""
    ocr = []
    y = 30
    for line in lines:
        text, height = (line, 28) if isinstance(line, str) else line
        width = 40 + 15 * len(text) * height // 28
        ocr.append(
            OcrLine(text, ((40, y), (width, y), (width, y + height), (40, y + height)), 0.99)
        )
        y += height + 18
    return build_page(ocr, 900, y + 40)


def _fill(lines: Sequence[Line], prompt: str = STORE_PROMPT) -> dict[str, object]:
    output = json.loads(render_content(_page(lines), prompt, Scene.GENERAL, True))
    assert isinstance(output, dict)
    return output


def test_the_name_in_the_footer_thanks_line_names_the_store() -> None:
    receipt = [*NO_LOGO, *ITEMS, "Vielen Dank für Ihren Einkauf bei EDEKA Müller", "Bis bald!"]

    output = _fill(receipt)

    assert output["store"] == "EDEKA Müller"
    assert output["total"] == "17,28"


@pytest.mark.parametrize(
    ("footer", "store"),
    [
        (["Merci de votre visite chez Maison Dupont"], "Maison Dupont"),
        (["Thank you for shopping at Greenfield Grocers!"], "Greenfield Grocers"),
        (["Bedankt voor uw aankoop bij Bakkerij Holm"], "Bakkerij Holm"),
        (["Gracias por su compra en Panaderia Sol"], "Panaderia Sol"),
        (["Grazie per il suo acquisto da Forno Rossi"], "Forno Rossi"),
        (["Es bediente Sie Frau Schulz", "Ihr KORNBLUME-Team"], "KORNBLUME"),
        (["Danke für Ihren Einkauf bei Hofladen Petersen und bis bald"], "Hofladen Petersen"),
        # The name printed on the line under the thanks.
        (["Vielen Dank für Ihren Einkauf bei", "Hofladen Petersen"], "Hofladen Petersen"),
    ],
)
def test_thanks_and_team_lines_in_several_languages(footer: list[str], store: str) -> None:
    assert _fill([*NO_LOGO, *ITEMS, *footer])["store"] == store


def test_a_thanks_line_that_names_nobody_names_no_store() -> None:
    receipt = [
        *NO_LOGO,
        *ITEMS,
        "Vielen Dank für Ihren Einkauf bei uns",
        "Thank you for your visit",
    ]

    assert _fill(receipt)["store"] is None


def test_the_web_domain_names_the_store_when_the_logo_is_a_picture() -> None:
    output = _fill([*NO_LOGO, *ITEMS, "Besuchen Sie uns auf www.kornblume.de"])

    assert str(output["store"]).lower() == "kornblume"


def test_a_mail_domain_is_given_as_the_page_prints_that_name() -> None:
    receipt = [
        *NO_LOGO,
        *ITEMS,
        "FRISCHMARKT HANSEN - Ihr Nahversorger seit 1982",
        "Fragen? info@frischmarkt-hansen.de",
    ]

    assert _fill(receipt)["store"] == "FRISCHMARKT HANSEN"


def test_a_domain_read_without_its_umlaut_still_finds_the_printed_name() -> None:
    # OCR drops the dots of "SÜD" on a page with few accents; the domain spells it "sued".
    receipt = [*NO_LOGO, *ITEMS, "NORDKAUF SUD Vertriebs GmbH", "www.nordkauf-sued.de"]

    assert _fill(receipt)["store"] == "NORDKAUF SUD"


@pytest.mark.parametrize(
    ("slogan", "store"),
    [
        ("Kornblume lohnt sich", "Kornblume"),
        ("Gut und günstig", "kornblume"),
        ("Frische, die man schmeckt", "kornblume"),
        ("Besser leben.", "kornblume"),
    ],
)
def test_a_slogan_on_the_logo_line_gives_way_to_the_domain(slogan: str, store: str) -> None:
    receipt: list[Line] = [
        (slogan, 64),
        "Lindenallee 12",
        "20095 Hamburg",
        *ITEMS,
        "www.kornblume.de",
    ]

    assert _fill(receipt)["store"] == store


def test_a_header_line_matching_the_domain_and_the_footer_wins() -> None:
    receipt: list[Line] = [
        ("KORNBLUME Markt Petersen", 40),
        "Lindenallee 12",
        "20095 Hamburg",
        *ITEMS,
        "Danke für Ihren Einkauf bei Kornblume",
        "www.kornblume.de",
    ]

    assert _fill(receipt)["store"] == "KORNBLUME Markt Petersen"


def test_footer_and_domain_together_outvote_a_logo_line_naming_something_else() -> None:
    receipt: list[Line] = [
        ("Frische Ecke", 64),
        "Lindenallee 12",
        "20095 Hamburg",
        *ITEMS,
        "Vielen Dank für Ihren Einkauf bei KORNBLUME Petersen",
        "www.kornblume.de",
    ]

    assert _fill(receipt)["store"] == "KORNBLUME Petersen"


def test_a_legal_owner_line_in_the_footer_names_the_store_without_its_legal_form() -> None:
    receipt: list[Line] = [
        ("Frische, die man schmeckt", 64),
        "Marktplatz 1",
        "80331 München",
        *ITEMS,
        "Betreiber: Müller Lebensmittel GmbH & Co. KG",
        "USt-IdNr. DE123456789",
    ]

    output = _fill(receipt)

    assert output["store"] == "Müller Lebensmittel"
    # A company key keeps the legal form.
    assert output["company"] == "Müller Lebensmittel GmbH & Co. KG"


def test_an_owner_after_the_store_on_one_line_is_not_the_store() -> None:
    receipt = [*NO_LOGO[1:], "Kornblume Petersen, Inh. Jan Petersen e.K.", *ITEMS]

    assert _fill(receipt)["store"] == "Kornblume Petersen"


@pytest.mark.parametrize(
    "header",
    [
        "Gut und günstig",
        "Frische, die man schmeckt",
        "Willkommen",
        "Kassenbon",
        "Beleg",
        "Rechnung",
    ],
)
def test_nothing_but_slogans_and_headings_gives_null(header: str) -> None:
    receipt: list[Line] = [
        (header, 64),
        "Kassenbon",
        "Marktplatz 1",
        "80331 München",
        *ITEMS,
        "Danke!",
    ]

    output = _fill(receipt, '{"store": "Store name", "company": "Company", "merchant": "Merchant"}')

    assert output == {"store": None, "company": None, "merchant": None}


def test_a_till_makers_or_mail_providers_domain_is_not_the_store() -> None:
    receipt = [
        *NO_LOGO,
        *ITEMS,
        "Kassensystem: www.kassenprofi.de",
        "Bestellungen: baeckerei.sonne@gmail.com",
    ]

    assert _fill(receipt)["store"] is None


def test_merchant_and_store_keys_get_the_brand_and_company_keys_the_legal_name() -> None:
    receipt: list[Line] = [
        ("KORNBLUME", 64),
        "Kornblume Handels GmbH",
        "Lindenallee 12, 20095 Hamburg",
        *ITEMS,
    ]
    prompt = (
        '{"merchant": "Merchant name", "store_name": "Name of the shop", '
        '"company": "Company / merchant name", "seller": "Legal name of the merchant", '
        '"händler": "Name des Geschäfts"}'
    )

    assert _fill(receipt, prompt) == {
        "merchant": "KORNBLUME",
        "store_name": "KORNBLUME",
        "company": "Kornblume Handels GmbH",
        "seller": "Kornblume Handels GmbH",
        "händler": "KORNBLUME",
    }


def test_a_malaysian_receipt_keeps_its_legal_name_for_a_company_key() -> None:
    receipt: list[Line] = [
        ("XYZ TRADING SDN BHD", 40),
        "(123456-A)",
        "NO 12, JALAN MAJU 3, TAMAN MAJU",
        "81300 SKUDAI, JOHOR",
        "GST REG NO: 000123456789",
        "TAX INVOICE",
        "ITEM A 12.00",
        "TOTAL 12.00",
        "THANK YOU PLEASE COME AGAIN",
    ]
    prompt = '{"company": "Company / merchant name", "store": "Store name"}'

    assert _fill(receipt, prompt) == {"company": "XYZ TRADING SDN BHD", "store": "XYZ TRADING"}


def test_a_company_key_without_a_legal_form_in_the_header_asks_the_whole_receipt() -> None:
    receipt = [*NO_LOGO, *ITEMS, "Merci de votre visite", "Exploité par Dupont Distribution SARL"]

    assert _fill(receipt)["company"] == "Dupont Distribution SARL"


def test_a_legal_name_in_the_header_gives_the_brand_without_its_trade_words() -> None:
    receipt = ["Kornblume Markt GmbH", "Lindenallee 12", "20095 Hamburg", *ITEMS]

    output = _fill(receipt)

    assert output["store"] == "Kornblume"
    assert output["company"] == "Kornblume Markt GmbH"
