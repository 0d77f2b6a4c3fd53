"""The embedded engine beyond English receipts: other languages, decimal commas, printed
ranges and dates, store versus legal names, and pages scanned sideways or upside down.
Every document here is rendered for the test and read by the real OCR."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import pytest
from PIL import Image, ImageDraw

from extraction.engine.document import extract_document
from extraction.engine.layout import Page, build_page
from extraction.engine.merchant import address
from extraction.engine.ocr import OcrLine, TextRecognizer
from extraction.engine.totals import payable_total
from extraction.engine.values import (
    amount_value,
    find_amounts,
    find_date,
    find_date_ranges,
    repair_company,
)
from extraction.grounding import ground
from tests.sample_images import font, printed_page

RECEIPT_PROMPT = (
    '{"store": "Store name", "company": "Company legal name", "date": "Date", '
    '"total": "Total amount", "cash": "Cash tendered", "change": "Change"}'
)


@dataclass(frozen=True)
class Receipt:
    language: str
    logo: str
    legal_name: str
    address: str
    date_line: str
    items: tuple[tuple[str, str], ...]
    total_line: tuple[str, str]
    cash_line: tuple[str, str]
    change_line: tuple[str, str]

    def image(self) -> Image.Image:
        picture = Image.new("RGB", (760, 900), "white")
        draw = ImageDraw.Draw(picture)
        draw.text((60, 30), self.logo, fill="black", font=font(52, bold=True))
        small = font(26)
        draw.text((60, 120), self.legal_name, fill="black", font=small)
        draw.text((60, 165), self.address, fill="black", font=small)
        draw.text((60, 240), self.date_line, fill="black", font=small)
        y = 320
        for name, price in self.items:
            draw.text((60, y), name, fill="black", font=small)
            draw.text((520, y), price, fill="black", font=small)
            y += 50
        y += 30
        for label, amount in (self.total_line, self.cash_line, self.change_line):
            draw.text((60, y), label, fill="black", font=small)
            draw.text((520, y), amount, fill="black", font=small)
            y += 55
        return picture


RECEIPTS = (
    Receipt(
        "German",
        "FRISCHKORB",
        "Frischkorb Handels GmbH",
        "Lindenallee 12, 20095 Hamburg",
        "Datum: 14.03.2024",
        (("Vollkornbrot", "2,49"), ("Bergkäse", "12,80")),
        ("SUMME EUR", "15,29"),
        ("Gegeben BAR", "20,00"),
        ("Rückgeld", "4,71"),
    ),
    Receipt(
        "French",
        "CHEZ MARCEAU",
        "Marceau Distribution SARL",
        "12 rue des Lilas, 75002 Paris",
        "Date : 3 mars 2024",
        (("Baguette", "1,20"), ("Fromage", "8,50")),
        ("TOTAL TTC", "9,70"),
        ("Espèces", "20,00"),
        ("Rendu", "10,30"),
    ),
    Receipt(
        "Spanish",
        "LA DESPENSA",
        "Despensa Central S.L.",
        "Calle Mayor 5, 28013 Madrid",
        "Fecha: 12/04/2024",
        (("Aceite de oliva", "9,95"), ("Pan", "1,10"), ("Queso", "12,40")),
        ("TOTAL (IVA INCLUIDO)", "23,45"),
        ("Efectivo", "50,00"),
        ("Cambio", "26,55"),
    ),
    Receipt(
        "Italian",
        "ALIMENTARI FERRO",
        "Ferro Alimentari S.r.l.",
        "Via dei Mille 10, 00184 Roma",
        "Data 15 maggio 2024",
        (("Pasta", "1,90"), ("Pomodori", "3,50"), ("Caffè", "13,00")),
        ("TOTALE EURO", "18,40"),
        ("Contanti", "20,00"),
        ("Resto", "1,60"),
    ),
    Receipt(
        "Portuguese",
        "MERCEARIA LUZ",
        "Luz Comércio Lda",
        "Rua Augusta 20, 1100-053 Lisboa",
        "Data: 20-06-2024",
        (("Pão", "0,85"), ("Café", "7,00")),
        ("TOTAL", "7,85"),
        ("Dinheiro", "10,00"),
        ("Troco", "2,15"),
    ),
    Receipt(
        "Dutch",
        "BAKKERIJ HOLM",
        "Holm Bakkerij B.V.",
        "Kerkstraat 8, 1017 GC Amsterdam",
        "Datum: 5 januari 2024",
        (("Bruidstaart", "1.180,00"), ("Koffie", "54,50")),
        ("TOTAAL", "1.234,50"),
        ("Contant", "1.250,00"),
        ("Wisselgeld", "15,50"),
    ),
)


@pytest.fixture(scope="module")
def recognizer() -> TextRecognizer:
    return TextRecognizer()


def _extract(recognizer: TextRecognizer, picture: Image.Image, prompt: str) -> dict[str, object]:
    output = json.loads(extract_document(picture, prompt, recognizer=recognizer).content)
    assert isinstance(output, dict)
    return output


@pytest.mark.parametrize("receipt", RECEIPTS, ids=[r.language for r in RECEIPTS])
def test_receipts_in_other_languages(recognizer: TextRecognizer, receipt: Receipt) -> None:
    output = _extract(recognizer, receipt.image(), RECEIPT_PROMPT)

    # The payable total, not the cash tendered or the change, with its decimal comma.
    assert output["total"] == receipt.total_line[1]
    assert output["cash"] == receipt.cash_line[1]
    assert output["change"] == receipt.change_line[1]
    assert output["date"] == receipt.date_line.split(":")[-1].split(" ", 1)[-1].strip() or (
        output["date"] == receipt.date_line
    )
    # A store name is the brand on the logo line; the legal name keeps its legal form.
    assert str(output["store"]).upper() == receipt.logo
    assert output["company"] == receipt.legal_name


def test_a_template_in_the_documents_own_language(recognizer: TextRecognizer) -> None:
    spanish = RECEIPTS[2]
    prompt = (
        '{"tienda": "Nombre de la tienda", "fecha": "Fecha de la compra", '
        '"importe_total": "Importe total", "cambio": "Cambio devuelto"}'
    )

    output = _extract(recognizer, spanish.image(), prompt)

    assert output == {
        "tienda": "LA DESPENSA",
        "fecha": "12/04/2024",
        "importe_total": "23,45",
        "cambio": "26,55",
    }


def test_amounts_with_decimal_commas_and_thousands_separators() -> None:
    printed = {
        "Summe 1.234,56 EUR": 1234.56,
        "Total 1 234,56 €": 1234.56,
        "CHF 1'234.50": 1234.50,
        "Amount due $1,234.56": 1234.56,
        "TOTAAL 12,50": 12.5,
        "Totale € 3.499,00": 3499.0,
    }
    for text, value in printed.items():
        found = find_amounts(text)
        assert [amount_value(a) for a in found] == [value], text
    # A quantity and a price with a decimal point are two figures, not one.
    assert find_amounts("1 100.00") == ["100.00"]


def test_dates_with_month_names_in_the_languages_receipts_print() -> None:
    for text in (
        "1. März 2020",
        "3 mars 2020",
        "12 de marzo de 2020",
        "15 maggio 2021",
        "1 de março de 2020",
        "5 januari 2021",
        "1er août 2021",
        "12 Dez. 2020",
    ):
        assert find_date(f"Datum: {text}") == text
    assert find_date("3 marketing 2020") is None


def test_printed_ranges_whose_first_date_borrows_from_the_second() -> None:
    ranges = {
        "March 1 to March 7, 2020": ("March 1, 2020", "March 7, 2020"),
        "March 1 - 7, 2020": ("March 1, 2020", "March 7, 2020"),
        "1/13 - 1/19/2020": ("1/13/2020", "1/19/2020"),
        "01.03.\u201331.03.2020": ("01.03.2020", "31.03.2020"),  # an en dash
        "1 mars au 7 mars 2020": ("1 mars 2020", "7 mars 2020"),
        "del 3 al 9 de marzo de 2021": ("3 marzo 2021", "9 de marzo de 2021"),
        "du 01/03/2020 au 07/03/2020": ("01/03/2020", "07/03/2020"),
    }
    for text, (first, second) in ranges.items():
        assert [(a, b) for _at, a, b in find_date_ranges(text)] == [(first, second)], text


def test_a_month_name_range_on_a_page_fills_start_and_end(recognizer: TextRecognizer) -> None:
    picture = Image.new("RGB", (900, 300), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((60, 60), "Campaign: Spring Sale", fill="black", font=font(28))
    draw.text((60, 130), "Flight: March 2 - 8, 2020", fill="black", font=font(28))
    prompt = '{"flight_start_date": "Flight start date", "flight_end_date": "Flight end date"}'

    result = extract_document(picture, prompt, recognizer=recognizer)
    output = json.loads(result.content)
    evidence = ground(output, result.printed)

    assert output == {"flight_start_date": "March 2, 2020", "flight_end_date": "March 8, 2020"}
    # Each end is grounded on the line that prints the range, though not printed whole.
    for key in output:
        assert evidence[key]["grounded"], key
        assert evidence[key]["text"] == "Flight: March 2 - 8, 2020"


def _turned_box(
    box: tuple[float, float, float, float], angle: int
) -> tuple[float, float, float, float]:
    """Where a box (fractions of the upright page) lands on the page turned ``angle``
    degrees counter-clockwise."""
    corners = [(box[0], box[1]), (box[2], box[3])]
    moved = {
        90: [(y, 1 - x) for x, y in corners],
        180: [(1 - x, 1 - y) for x, y in corners],
        270: [(1 - y, x) for x, y in corners],
    }[angle]
    xs, ys = [x for x, _ in moved], [y for _, y in moved]
    return min(xs), min(ys), max(xs), max(ys)


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_a_page_scanned_sideways_or_upside_down_is_read_upright(
    recognizer: TextRecognizer, angle: int
) -> None:
    receipt = RECEIPTS[0]
    upright = receipt.image()
    expected = extract_document(upright, RECEIPT_PROMPT, recognizer=recognizer)

    turned = extract_document(
        upright.rotate(angle, expand=True), RECEIPT_PROMPT, recognizer=recognizer
    )

    assert json.loads(turned.content) == json.loads(expected.content)
    assert json.loads(turned.content)["total"] == "15,29"
    # The evidence boxes are on the image as it was sent, not on the righted copy.
    upright_box = next(line.box for line in expected.printed if "Lindenallee" in line.text)
    turned_box = next(line.box for line in turned.printed if "Lindenallee" in line.text)
    assert turned_box == pytest.approx(_turned_box(upright_box, angle), abs=0.02)


# A form's boxes and labels, a little smaller than a receipt's print.
_form = functools.partial(printed_page, size=(1100, 420), font_size=24)


def test_forms_with_values_under_or_beside_their_labels(recognizer: TextRecognizer) -> None:
    prompt = '{"advertiser": "Advertiser", "product": "Product", "estimate": "Estimate"}'
    # Boxes of a grid: each heading over its value, the next heading boxes away.
    grid = _form(
        [
            (60, 40, "Advertiser"),
            (640, 40, "Original Date / Revision"),
            (60, 75, "Hillside Community Fund"),
            (640, 75, "05/04/20"),
            (60, 150, "Product"),
            (640, 150, "Estimate"),
            (60, 185, "Spring Campaign"),
            (640, 185, "5802"),
        ]
    )
    # A list: each label with its value beside it, one under the other.
    listed = _form(
        [
            (60, 40, "Advertiser"),
            (60, 90, "Product"),
            (60, 140, "Estimate"),
            (260, 40, "Hillside Community Fund"),
            (260, 90, "Spring Campaign"),
            (260, 140, "5802"),
        ]
    )
    # A label split over two fragments ("Advertiser" "Name:") before its value.
    split = _form(
        [(60, 40, "Advertiser"), (230, 40, "Name:"), (400, 40, "Hillside Community Fund")]
    )
    expected = {"advertiser": "Hillside Community Fund", "product": "Spring Campaign"}

    assert _extract(recognizer, grid, prompt) == {**expected, "estimate": "5802"}
    assert _extract(recognizer, listed, prompt) == {**expected, "estimate": "5802"}
    assert _extract(recognizer, split, prompt)["advertiser"] == "Hillside Community Fund"


def test_a_gross_total_from_its_columns_totals_row_or_beside_a_net_total(
    recognizer: TextRecognizer,
) -> None:
    prompt = '{"gross_amount": "Gross total amount", "net_amount": "Net total amount"}'
    rows = (
        ("Time Period", "# of Spots", "Gross Amount", "Agency Comm.", "Net Amount"),
        ("03/02/20 - 03/29/20", "8", "$1,200.00", "($180.00)", "$1,020.00"),
        ("03/30/20 - 04/26/20", "2", "$300.00", "($45.00)", "$255.00"),
        ("Totals", "10", "$1,500.00", "($225.00)", "$1,275.00"),
    )
    cells = [
        (x, y, text)
        for y, row in zip((40, 100, 150, 200), rows, strict=True)
        for x, text in zip((40, 330, 500, 700, 900), row, strict=True)
    ]
    picture = printed_page(cells, size=(1200, 330), font_size=22)

    # Each column's figure on its totals row, not the first period's.
    assert _extract(recognizer, picture, prompt) == {
        "gross_amount": "1,500.00",
        "net_amount": "1,275.00",
    }

    summary = _form(
        [
            (60, 40, "Grand Total:"),
            (400, 40, "$640.00"),
            (60, 100, "Commission"),
            (400, 100, "$96.00"),
            (60, 160, "Net Total"),
            (400, 160, "$544.00"),
        ]
    )
    # No "gross" printed: the gross total is the total that is not the net one.
    assert _extract(recognizer, summary, '{"gross_amount": "Gross total amount"}') == {
        "gross_amount": "640.00"
    }


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["Unit 4, Quay Street,", "Riverside Park, 40170", "Springfield", "Tel: 555-0134"],
            "Unit 4, Quay Street, Riverside Park, 40170 Springfield",
        ),
        (
            ["Unit 4, Quay Street, Riverside Park", "40170 Springfield. Tel: 555-0134"],
            "Unit 4, Quay Street, Riverside Park 40170 Springfield.",
        ),
    ],
    ids=["town-after-a-postcode", "phone-on-the-town-line"],
)
def test_an_address_ends_where_the_contact_details_start(
    recognizer: TextRecognizer, lines: list[str], expected: str
) -> None:
    picture = Image.new("RGB", (760, 420), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((60, 40), "HARBOUR BOOKS LTD", fill="black", font=font(30))
    for number, line in enumerate(lines):
        draw.text((60, 100 + 45 * number), line, fill="black", font=font(26))
    draw.text((60, 340), "TOTAL 12.00", fill="black", font=font(26))

    output = _extract(recognizer, picture, '{"address": "Merchant address"}')

    assert output["address"] == expected


def test_legal_names_keep_their_form_and_lose_what_ocr_added() -> None:
    # A dotted legal form keeps its last dot; OCR's capital I for the l of S.r.l. is undone.
    assert repair_company("Despensa Central S.L.") == "Despensa Central S.L."
    assert repair_company("Ferro Alimentari S.r.I.") == "Ferro Alimentari S.r.l."
    # An opening bracket cut off at the edge of the line is not part of the name.
    assert repair_company("HARBOUR HARDWARE SDN BHD (S") == "HARBOUR HARDWARE SDN BHD"


def _printed(texts: list[str]) -> Page:
    """A page of recognised lines, one under the other (as OCR returns them)."""
    lines = [
        OcrLine(text, ((40, y), (600, y), (600, y + 30), (40, y + 30)), 0.99)
        for y, text in zip(range(40, 40 + 50 * len(texts), 50), texts, strict=True)
    ]
    return build_page(lines, 700, 60 + 50 * len(texts))


def test_a_european_receipts_address_ends_before_its_prices_and_tax_numbers() -> None:
    # A decimal comma is a price, not a comma between an address's parts; a currency
    # heading, an item line and a tax number are where the issuer block ends.
    for lines, expected in (
        (["Filiale 0815", "Lindenallee 12", "20095 Hamburg", "EUR", "Vollkornbrot 2,49 A",
          "Bergkäse 12,80 A"], "Lindenallee 12 20095 Hamburg"),
        (["Bäckerei Krume", "Hauptstr. 17, 70173 Stuttgart", "St.-Nr. 99/123/45678",
          "2 x Brezel 1,60"], "Hauptstr. 17, 70173 Stuttgart"),
        (["Markt 2317", "Am Rathaus 9", "01067 Dresden", "Äpfel 2,99", "Tomaten 1,79"],
         "Am Rathaus 9 01067 Dresden"),
        (["Getränke Quelle", "Königstr. 2, 90402 Nürnberg", "USt-IdNr. DE812345678",
          "Cola 3,57"], "Königstr. 2, 90402 Nürnberg"),
    ):  # fmt: skip
        assert address(_printed(lines)) == expected, lines


def test_a_total_that_says_tax_is_included_is_the_total() -> None:
    for total in (
        "TOTAL (IVA INCLUIDO) 23,45",
        "Summe inkl. MwSt 23,45",
        "Total TVA incluse 23,45",
    ):
        page = _printed(["Subtotal 30,00", "Rabatt -6,55", total, "Tarjeta 23,45"])
        assert payable_total(page) == "23,45", total
