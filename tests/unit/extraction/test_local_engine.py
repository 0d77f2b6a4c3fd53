"""The embedded engine on rendered documents: real OCR, real layout, no network."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from core.errors import CorruptImage
from extraction.contract import ExtractionRequest, PreparedImage, Scene
from extraction.engine.document import EngineResult, extract_document, render_content
from extraction.engine.layout import build_page
from extraction.engine.ocr import OcrLine, TextRecognizer
from extraction.providers.local import LocalProvider
from extraction.schema import ArraySpec, FieldSpec, ObjectSpec, parse_schema
from tests.sample_images import printed_page

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"

INVOICE_PROMPT = (
    "Please extract the information from the image using the following schema: "
    '{"invoice_no":"Invoice Number","date":"Invoice Date","company":"Company name",'
    '"items":[{"name":"Item Name","qty":"Quantity","total":"Amount"}],'
    '"total":"Total amount","email":"Email address"}'
)


def _invoice() -> Image.Image:
    return printed_page(
        [
            (60, 40, "ACME TRADING LTD"),
            (60, 85, "12 Harbour Road, Springfield 40170"),
            (60, 160, "Invoice No: INV-2041"),
            (520, 160, "Date: 12/03/2024"),
            (60, 240, "Description"),
            (480, 240, "Qty"),
            (700, 240, "Amount"),
            (60, 290, "Blue Pen"),
            (480, 290, "2"),
            (700, 290, "5.60"),
            (60, 340, "Notebook A4"),
            (480, 340, "4"),
            (700, 340, "40.00"),
            (60, 440, "TOTAL"),
            (700, 440, "45.60"),
        ]
    )


@pytest.fixture(scope="module")
def recognizer() -> TextRecognizer:
    return TextRecognizer()


@pytest.fixture(scope="module")
def invoice_result(recognizer: TextRecognizer) -> EngineResult:
    return extract_document(_invoice(), INVOICE_PROMPT, json_mode=True, recognizer=recognizer)


def test_template_keys_are_filled_from_the_invoice(invoice_result: EngineResult) -> None:
    output = json.loads(invoice_result.content)

    assert list(output) == ["invoice_no", "date", "company", "items", "total", "email"]
    assert output["invoice_no"] == "INV-2041"
    assert output["date"] == "12/03/2024"
    assert output["company"] == "ACME TRADING LTD"
    assert output["total"] == "45.60"


def test_table_rows_become_line_items(invoice_result: EngineResult) -> None:
    items = json.loads(invoice_result.content)["items"]

    assert [item["name"] for item in items] == ["Blue Pen", "Notebook A4"]
    assert [item["total"] for item in items] == ["5.60", "40.00"]
    assert [item["qty"] for item in items] == ["2", "4"]


def test_a_key_the_document_lacks_is_null(invoice_result: EngineResult) -> None:
    assert json.loads(invoice_result.content)["email"] is None


def test_usage_counts_prompt_image_and_answer(invoice_result: EngineResult) -> None:
    usage = invoice_result.usage

    # Text tokens alone would be about len/4; the image adds at least the base cost.
    assert usage.prompt_tokens > len(INVOICE_PROMPT) // 4 + 85
    assert usage.completion_tokens == -(-len(invoice_result.content) // 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_without_a_schema_the_text_comes_back_in_reading_order(
    recognizer: TextRecognizer,
) -> None:
    result = extract_document(_invoice(), "Read this document.", recognizer=recognizer)
    lines = result.content.splitlines()

    assert lines[0] == "ACME TRADING LTD"
    order = [
        next(i for i, line in enumerate(lines) if needle in line)
        for needle in ("INV-2041", "Blue Pen", "Notebook A4", "TOTAL")
    ]
    assert order == sorted(order)
    assert any("Invoice No: INV-2041" in line and "12/03/2024" in line for line in lines)


def test_json_mode_without_a_schema_is_still_json(recognizer: TextRecognizer) -> None:
    result = extract_document(
        _invoice(), "What does this say?", json_mode=True, recognizer=recognizer
    )

    assert "INV-2041" in json.loads(result.content)["text"]


def test_a_json_schema_prompt_is_followed_with_its_types(recognizer: TextRecognizer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "invoice_number": {"type": "string", "description": "Invoice number"},
            "issued": {"type": "string", "format": "date", "description": "Date of issue"},
            "grand_total": {"type": "number", "description": "Total amount due"},
            "po_number": {"type": ["string", "null"], "description": "Purchase order number"},
        },
    }
    prompt = f"Return JSON matching this JSON Schema:\n{json.dumps(schema)}"

    output = json.loads(extract_document(_invoice(), prompt, recognizer=recognizer).content)

    assert output == {
        "invoice_number": "INV-2041",
        "issued": "12/03/2024",
        "grand_total": 45.6,
        "po_number": None,
    }


def test_a_blank_page_gives_nulls_not_an_error(recognizer: TextRecognizer) -> None:
    blank = Image.new("L", (400, 300), 255)

    result = extract_document(blank, INVOICE_PROMPT, json_mode=True, recognizer=recognizer)

    assert json.loads(result.content) == {
        "invoice_no": None,
        "date": None,
        "company": None,
        "items": [],
        "total": None,
        "email": None,
    }


def test_schema_is_found_inside_prose_and_fences() -> None:
    prompt = (
        "Extract [all] fields.\n```json\n"
        '{"seller": {"name": "Seller name"}, "lines": [{"sku": "Code"}],}\n```\nThanks!'
    )

    spec = parse_schema(prompt)

    assert isinstance(spec, ObjectSpec)
    seller, lines = spec.fields
    assert isinstance(seller, ObjectSpec)
    assert seller.fields == (FieldSpec(key="name", description="Seller name"),)
    assert isinstance(lines, ArraySpec)
    assert parse_schema("Just read the receipt, please.") is None


def _cjk_font() -> str | None:
    if shutil.which("fc-list") is None:
        return None
    listing = subprocess.run(
        ["fc-list", ":lang=zh", "file"], capture_output=True, text=True, check=False
    ).stdout
    paths = [line.split(":")[0].strip() for line in listing.splitlines() if line.strip()]
    return paths[0] if paths else None


def test_chinese_labels_are_understood(recognizer: TextRecognizer) -> None:
    font_path = _cjk_font()
    if font_path is None:
        pytest.skip("no CJK font installed (fc-list :lang=zh is empty)")
    font = ImageFont.truetype(font_path, 30)
    image = Image.new("RGB", (820, 360), "white")
    draw = ImageDraw.Draw(image)
    for x, y, text in [
        (40, 40, "发票号码\uff1a08812345"),
        (40, 110, "开票日期\uff1a2024年03月12日"),
        (40, 180, "销售方名称\uff1a星河贸易有限公司"),
        (40, 250, "价税合计\uff08小写\uff09¥128.50"),
    ]:
        draw.text((x, y), text, fill="black", font=font)
    prompt = '请按此格式提取\uff1a{"发票号码":"发票号码","开票日期":"开票日期","合计":"价税合计"}'

    output = json.loads(
        extract_document(image, prompt, Scene.GENERAL, recognizer=recognizer).content
    )

    assert output["发票号码"] == "08812345"
    assert output["开票日期"].startswith("2024年03月12")
    assert output["合计"] == "128.50"


def _line(text: str, x: float, y: float, width: float) -> OcrLine:
    return OcrLine(text, ((x, y), (x + width, y), (x + width, y + 30), (x, y + 30)), 0.99)


def test_chinese_and_medical_labels_on_recognised_lines() -> None:
    # Recognised lines as the OCR step returns them, so this runs without a CJK font.
    page = build_page(
        [
            _line("发票号码\uff1a08812345", 40, 40, 300),
            _line("开票日期\uff1a2024年03月12日", 40, 110, 380),
            _line("价税合计\uff08小写\uff09¥128.50", 40, 180, 400),
            _line("患者姓名", 40, 250, 120),
            _line("张三", 200, 250, 60),
            _line("科室\uff1a内科", 400, 250, 150),
        ],
        820,
        320,
    )
    invoice_prompt = '提取\uff1a{"invoice_no":"发票号码","date":"开票日期","total":"价税合计"}'
    medical_prompt = '{"patient_name":"患者姓名","department":"科室","diagnosis":"诊断"}'

    invoice = json.loads(render_content(page, invoice_prompt, Scene.GENERAL, True))
    medical = json.loads(render_content(page, medical_prompt, Scene.MEDICAL, True))

    assert invoice == {"invoice_no": "08812345", "date": "2024年03月12日", "total": "128.50"}
    assert medical == {"patient_name": "张三", "department": "内科", "diagnosis": None}


def _box(text: str, x0: float, y0: float, x1: float, y1: float) -> OcrLine:
    return OcrLine(text, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)), 0.99)


def test_a_value_half_a_line_off_its_label_in_a_column_of_labels_is_that_labels() -> None:
    # An order's header: labels one under the other, values in a column to the right, the
    # first value printed a little lower than its label (so OCR puts it on a row of its
    # own), and another box's label far right on the label's row.
    page = build_page(
        [
            _box("WXYZ", 230, 91, 280, 119),
            _box("Advertiser", 460, 91, 525, 110),
            _box("Lakeside Growers Cooperative", 600, 105, 790, 124),
            _box("Sold By", 1040, 91, 1110, 110),
            _box("Agency", 460, 117, 510, 136),
            _box("Northgate Media Buying", 600, 118, 780, 137),
            _box("Product", 460, 142, 510, 161),
            _box("Public Service", 600, 142, 700, 161),
        ],
        1600,
        400,
    )
    prompt = '{"advertiser": "Advertiser (the client buying the airtime)", "agency": "Agency"}'
    output = json.loads(render_content(page, prompt, Scene.GENERAL, True))
    # Not the far box's label, not the next label under it.
    assert output == {
        "advertiser": "Lakeside Growers Cooperative",
        "agency": "Northgate Media Buying",
    }


def test_the_range_after_the_keys_word_on_a_row_of_two_ranges_is_the_keys() -> None:
    page = build_page(
        [
            _line("Invoice Date 02/16/20", 40, 40, 400),
            _line("Invoice Period 01/27/20 - 02/14/20", 40, 90, 420),
            _line("Flight Dates 03/02/20 - 03/08/20", 520, 90, 420),
            _line("Advertiser Harbour Hardware", 40, 140, 400),
        ],
        1000,
        200,
    )
    prompt = '{"flight_start_date": "Flight start date", "flight_end_date": "Flight end date"}'
    output = json.loads(render_content(page, prompt, Scene.GENERAL, True))
    assert output == {"flight_start_date": "03/02/20", "flight_end_date": "03/08/20"}


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalProvider]:
    local = LocalProvider()
    yield local
    local.close()


def _png(image: Image.Image) -> PreparedImage:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return PreparedImage(buffer.getvalue(), "image/png", image.width, image.height)


def test_local_provider_answers_like_a_model(provider: LocalProvider) -> None:
    request = ExtractionRequest(prompt='Extract {"total": "Total"}', json_mode=True)

    result = provider.extract(_png(_invoice()), request)

    assert provider.name == "local"
    assert json.loads(result.content) == {"total": "45.60"}
    assert result.usage.total_tokens > 0


def test_local_provider_rejects_bytes_that_are_not_an_image(provider: LocalProvider) -> None:
    broken = PreparedImage(b"\x89PNG\r\n\x1a\n not really", "image/png", 10, 10)

    with pytest.raises(CorruptImage):
        provider.extract(broken, ExtractionRequest(prompt="Read it"))


@pytest.mark.skipif(not (DATA / "sroie-dev").is_dir(), reason="shared SROIE dev set not present")
def test_real_receipts_give_json_with_exactly_the_schema_keys(provider: LocalProvider) -> None:
    folder = DATA / "sroie-dev"
    prompt = (folder / "prompt.txt").read_text()
    labels = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines()]
    for label in labels[:3]:
        picture = Image.open(folder / label["image"]).convert("RGB")
        result = provider.extract(_png(picture), ExtractionRequest(prompt=prompt, json_mode=True))

        output = json.loads(result.content)

        assert set(output) == {"company", "date", "address", "total"}
        assert all(value is None or isinstance(value, str) for value in output.values())


def _order() -> Image.Image:
    """An advertising order: a date, a printed flight range, and three amounts of which
    the payable one is not the gross."""
    return printed_page(
        [
            (60, 40, "WXYZ-TV ORDER CONFIRMATION"),
            (60, 110, "Invoice Date: 03/20/20"),
            (60, 170, "Invoice Period: 02/24/20 - 03/22/20"),
            (60, 230, "Order Flight: 03/13/20 - 03/19/20"),
            (60, 330, "Gross Total"),
            (520, 330, "$325.00"),
            (60, 380, "Agency Commission"),
            (520, 380, "$48.75"),
            (60, 430, "Net Amount Due"),
            (520, 430, "$276.25"),
        ],
        size=(900, 520),
    )


def test_a_range_gives_its_first_date_to_the_start_and_its_second_to_the_end(
    recognizer: TextRecognizer,
) -> None:
    prompt = (
        '{"flight_start_date": "Flight start date", "flight_end_date": "Flight end date", '
        '"gross_amount": "Gross total amount", "net_amount": "Net amount", '
        '"invoice_date": "Invoice date"}'
    )
    output = json.loads(extract_document(_order(), prompt, recognizer=recognizer).content)
    # The range printed beside the key's own word ("flight"), not the invoice period.
    assert output["flight_start_date"] == "03/13/20"
    assert output["flight_end_date"] == "03/19/20"
    # Gross and net each from their own label: the payable total is the net.
    assert output["gross_amount"] == "325.00"
    assert output["net_amount"] == "276.25"
    assert output["invoice_date"] == "03/20/20"


def test_periods_and_stays_in_other_layouts_and_languages(recognizer: TextRecognizer) -> None:
    page = printed_page(
        [
            (60, 40, "Hotel Seeblick GmbH"),
            (60, 110, "Zeitraum: 01.03.-31.03.2020"),
            (60, 180, "Check-in: 12/05/2026"),
            (480, 180, "Check-out: 12/08/2026"),
            (60, 260, "Zwischensumme 90,00"),
            (60, 310, "MwSt 17,10"),
            (60, 360, "Gesamt 107,10"),
        ],
        size=(900, 440),
    )
    prompt = (
        '{"period_from": "Period from", "period_to": "Period to", "check_in": "Check-in", '
        '"check_out": "Check-out", "subtotal": "Subtotal", "tax": "VAT", "total": "Total"}'
    )
    output = json.loads(extract_document(page, prompt, recognizer=recognizer).content)
    # A range whose first date leaves its year to the second.
    assert output["period_from"] == "01.03.2020"
    assert output["period_to"] == "31.03.2020"
    assert output["check_in"] == "12/05/2026"
    assert output["check_out"] == "12/08/2026"
    assert output["subtotal"] == "90,00"
    assert output["tax"] == "17,10"
    assert output["total"] == "107,10"
