"""How documents print the labels that prompts ask about, in English, German, French, Spanish,
Italian, Portuguese, Dutch and Chinese.

A prompt says ``"invoice_no": "Invoice Number"``; the document may print "Invoice #",
"Inv. No." or "发票号码". A ``Concept`` ties the words a prompt uses (``cues``) to the labels
documents print (``labels``). Concepts belong to scenes: ``general`` covers invoices, receipts,
reimbursements and cost lists; ``medical`` adds records, test reports, prescriptions and
charge lists. Nothing here is specific to one merchant, country or data set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from extraction.contract import Scene
from extraction.engine.values import ValueType, fold_accents

GENERAL = frozenset({Scene.GENERAL, Scene.MEDICAL})
MEDICAL = frozenset({Scene.MEDICAL})


@dataclass(frozen=True, slots=True)
class Concept:
    name: str
    cues: tuple[str, ...]
    labels: tuple[str, ...]
    value_type: ValueType | None = None
    scenes: frozenset[Scene] = GENERAL


_CONCEPTS: tuple[Concept, ...] = (
    Concept(
        "total",
        (
            "total",
            "grand total",
            "amount due",
            "amount payable",
            "total amount",
            "amount paid",
            "total paid",
            "net amount",
            "合计",
            "总计",
            "总额",
            "价税合计",
            "总金额",
            "应付",
            "实付",
            "实收",
            "应收",
            "费用总额",
            "合计金额",
        ),
        (
            "grand total",
            "total amount",
            "total incl",
            "total inclusive",
            "total (incl",
            "nett total",
            "net total",
            "total due",
            "amount due",
            "balance due",
            "total payable",
            "amount payable",
            "total sales",
            "total rm",
            "rounded total",
            "total",
            "amount",
            "价税合计",
            "合计金额",
            "总金额",
            "总计",
            "合计",
            "应付金额",
            "实付金额",
            "实收金额",
            "费用总额",
            "总费用",
            "小写",
        ),
        ValueType.AMOUNT,
    ),
    Concept(
        "subtotal",
        ("subtotal", "sub total", "sub-total", "小计", "不含税"),
        ("sub total", "subtotal", "sub-total", "total excl", "小计", "金额合计"),
        ValueType.AMOUNT,
    ),
    Concept(
        "tax",
        ("tax", "vat", "gst", "sst", "税额", "税金", "税"),
        ("tax amount", "total tax", "gst", "vat", "sst", "tax", "service tax", "税额", "税金"),
        ValueType.AMOUNT,
    ),
    Concept(
        "discount",
        ("discount", "折扣", "优惠"),
        ("discount", "disc", "折扣", "优惠"),
        ValueType.AMOUNT,
    ),
    Concept(
        "rounding",
        ("rounding", "round"),
        ("rounding", "round adj", "rounding adj"),
        ValueType.AMOUNT,
    ),
    Concept(
        "cash",
        ("cash", "tendered", "paid amount", "现金"),
        ("cash", "tendered", "现金"),
        ValueType.AMOUNT,
    ),
    Concept("change", ("change", "找零"), ("change", "change due", "找零"), ValueType.AMOUNT),
    Concept(
        "document_number",
        (
            "invoice no",
            "invoice number",
            "invoice num",
            "invoice id",
            "invoice #",
            "receipt no",
            "receipt number",
            "bill no",
            "bill number",
            "doc no",
            "document number",
            "order no",
            "order number",
            "transaction",
            "ref no",
            "reference",
            "发票号码",
            "发票号",
            "票据号",
            "单号",
            "收据号",
            "流水号",
            "订单号",
        ),
        (
            "invoice no",
            "invoice number",
            "invoice #",
            "inv no",
            "inv #",
            "tax invoice no",
            "receipt no",
            "receipt #",
            "receipt number",
            "bill no",
            "bill #",
            "doc no",
            "document no",
            "order no",
            "order #",
            "trans no",
            "transaction no",
            "ref no",
            "reference",
            "no",
            "发票号码",
            "发票号",
            "票据号码",
            "票据号",
            "收据号",
            "单号",
            "流水号",
            "订单号",
            "编号",
        ),
        ValueType.IDENTIFIER,
    ),
    Concept(
        "invoice_code",
        ("invoice code", "发票代码"),
        ("invoice code", "发票代码"),
        ValueType.IDENTIFIER,
    ),
    Concept(
        "due_date",
        ("due date", "payment due", "到期"),
        ("due date", "payment due", "due", "到期日", "到期日期"),
        ValueType.DATE,
    ),
    Concept(
        "date",
        ("date", "日期", "dated"),
        (
            "date",
            "invoice date",
            "bill date",
            "receipt date",
            "issue date",
            "date issued",
            "trans date",
            "doc date",
            "开票日期",
            "日期",
            "交易日期",
            "收费日期",
            "结算日期",
        ),
        ValueType.DATE,
    ),
    Concept("time", ("time", "时间"), ("time", "时间"), ValueType.TIME),
    Concept(
        "buyer",
        (
            "buyer",
            "customer",
            "bill to",
            "billed to",
            "client",
            "purchaser",
            "sold to",
            "ship to",
            "consignee",
            "购买方",
            "购方",
            "客户",
            "买方",
            "付款方",
            "交款人",
        ),
        (
            "bill to",
            "billed to",
            "sold to",
            "ship to",
            "customer",
            "customer name",
            "buyer",
            "client",
            "purchaser",
            "购买方",
            "购方",
            "客户名称",
            "客户",
            "买方",
            "交款人",
        ),
    ),
    Concept(
        "seller",
        (
            "company",
            "merchant",
            "vendor",
            "seller",
            "supplier",
            "store",
            "shop",
            "issuer",
            "business",
            "restaurant",
            "销售方",
            "销方",
            "商户",
            "商家",
            "供应商",
            "开票方",
            "收款单位",
            "公司",
        ),
        (
            "seller",
            "vendor",
            "supplier",
            "merchant",
            "sold by",
            "company",
            "销售方",
            "销方",
            "商户名称",
            "商户",
            "供应商",
            "收款单位",
            "开票单位",
        ),
        ValueType.COMPANY,
    ),
    Concept(
        "address",
        ("address", "addr", "location", "地址", "住址"),
        ("address", "addr", "add", "location", "地址", "住址", "地 址"),
        ValueType.ADDRESS,
    ),
    Concept(
        "tax_id",
        (
            "tax id",
            "tax number",
            "vat no",
            "vat number",
            "gst no",
            "gst id",
            "gst reg",
            "tin",
            "abn",
            "税号",
            "纳税人识别号",
            "税务登记号",
            "统一社会信用代码",
        ),
        (
            "gst id",
            "gst reg no",
            "gst no",
            "gst reg",
            "vat no",
            "vat reg no",
            "tax id",
            "tin",
            "abn",
            "纳税人识别号",
            "税号",
            "统一社会信用代码",
        ),
        ValueType.IDENTIFIER,
    ),
    Concept(
        "registration",
        ("registration", "company no", "reg no", "roc", "business registration", "注册号"),
        ("co reg no", "company no", "co no", "reg no", "roc no", "registration no", "注册号"),
        ValueType.IDENTIFIER,
    ),
    Concept(
        "phone",
        ("phone", "telephone", "tel", "mobile", "contact", "电话", "手机", "联系方式"),
        ("tel", "telephone", "phone", "ph", "mobile", "hp", "contact", "电话", "手机", "联系电话"),
        ValueType.PHONE,
    ),
    Concept("fax", ("fax", "传真"), ("fax", "传真"), ValueType.PHONE),
    Concept("email", ("email", "e-mail", "邮箱"), ("email", "e-mail", "邮箱"), ValueType.EMAIL),
    Concept(
        "payment_method",
        ("payment method", "payment type", "paid by", "tender", "支付方式", "付款方式"),
        ("payment method", "payment", "paid by", "tender", "card", "支付方式", "付款方式"),
    ),
    Concept(
        "cashier",
        ("cashier", "operator", "served by", "收款员", "收银员", "开票人"),
        ("cashier", "operator", "served by", "staff", "收款员", "收银员", "开票人", "收款人"),
        ValueType.PERSON,
    ),
    Concept("table", ("table",), ("table", "table no", "tbl"), ValueType.IDENTIFIER),
    Concept("currency", ("currency", "币种"), ("currency", "币种"), ValueType.TEXT),
    # Medical scene: records, test reports, prescriptions, charge lists.
    Concept(
        "patient_name",
        ("patient", "patient name", "姓名", "患者", "病人", "name"),
        ("patient name", "patient", "name", "姓名", "患者姓名", "病人姓名", "患者"),
        ValueType.PERSON,
        MEDICAL,
    ),
    Concept(
        "gender", ("gender", "sex", "性别"), ("gender", "sex", "性别"), ValueType.TEXT, MEDICAL
    ),
    Concept("age", ("age", "年龄"), ("age", "年龄"), ValueType.QUANTITY, MEDICAL),
    Concept(
        "hospital",
        ("hospital", "clinic", "医院", "诊所", "医疗机构", "机构"),
        ("hospital", "clinic", "医疗机构", "医院名称", "医院"),
        ValueType.COMPANY,
        MEDICAL,
    ),
    Concept(
        "department",
        ("department", "dept", "ward", "科室", "科别", "病区"),
        ("department", "dept", "ward", "科室", "科别", "就诊科室", "病区"),
        ValueType.TEXT,
        MEDICAL,
    ),
    Concept(
        "doctor",
        ("doctor", "physician", "医生", "医师"),
        ("doctor", "physician", "attending", "送检医生", "医生", "医师", "主治医师", "申请医生"),
        ValueType.PERSON,
        MEDICAL,
    ),
    Concept(
        "diagnosis",
        ("diagnosis", "诊断"),
        ("diagnosis", "临床诊断", "诊断", "入院诊断", "出院诊断"),
        ValueType.TEXT,
        MEDICAL,
    ),
    Concept(
        "record_number",
        (
            "record number",
            "medical record",
            "mrn",
            "patient id",
            "病历号",
            "住院号",
            "门诊号",
            "就诊号",
            "病案号",
            "样本号",
            "条码号",
            "医保号",
        ),
        (
            "mrn",
            "record no",
            "patient id",
            "病历号",
            "住院号",
            "门诊号",
            "就诊号",
            "病案号",
            "样本号",
            "条码号",
            "医保编号",
        ),
        ValueType.IDENTIFIER,
        MEDICAL,
    ),
    Concept(
        "admission_date",
        ("admission", "admitted", "入院"),
        ("admission date", "admitted", "入院日期", "入院时间"),
        ValueType.DATE,
        MEDICAL,
    ),
    Concept(
        "discharge_date",
        ("discharge", "出院"),
        ("discharge date", "discharged", "出院日期", "出院时间"),
        ValueType.DATE,
        MEDICAL,
    ),
    Concept(
        "report_date",
        ("report date", "reported", "报告日期", "报告时间"),
        ("report date", "reported", "报告日期", "报告时间"),
        ValueType.DATE,
        MEDICAL,
    ),
    Concept(
        "specimen",
        ("specimen", "sample", "标本", "样本类型"),
        ("specimen", "sample type", "标本类型", "标本", "样本类型"),
        ValueType.TEXT,
        MEDICAL,
    ),
    Concept("bed", ("bed", "床号"), ("bed", "bed no", "床号"), ValueType.IDENTIFIER, MEDICAL),
)

# The same concepts as German, French, Spanish, Italian, Portuguese and Dutch documents and
# prompts word them: (cues, labels), added after the English and Chinese ones.
_EUROPEAN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "total": (
        ("summe", "gesamtbetrag", "gesamtsumme", "endbetrag", "rechnungsbetrag", "montant total",
         "total ttc", "importe total", "totale", "importo totale", "valor total", "totaal",
         "totaalbedrag", "te betalen"),
        ("gesamtbetrag", "gesamtsumme", "endbetrag", "zu zahlen", "summe", "gesamt", "total ttc",
         "montant ttc", "net a payer", "total a payer", "montant total", "importe total",
         "total a pagar", "totale complessivo", "totale da pagare", "importo totale", "totale",
         "valor total", "valor a pagar", "totaal te betalen", "te betalen", "totaalbedrag",
         "totaal", "betrag", "montant", "importe", "importo", "bedrag"),
    ),
    "subtotal": (
        ("zwischensumme", "sous-total", "sous total", "subtotale", "subtotaal", "total ht"),
        ("zwischensumme", "nettobetrag", "summe netto", "sous-total", "sous total", "total ht",
         "montant ht", "base imponible", "subtotale", "imponibile", "subtotaal", "totaal excl"),
    ),
    "tax": (
        ("mwst", "ust", "mehrwertsteuer", "umsatzsteuer", "tva", "iva", "imposta", "impuesto",
         "imposto", "btw"),
        ("mwst", "mehrwertsteuer", "umsatzsteuer", "ust", "tva", "montant tva", "iva", "cuota iva",
         "imposta", "impuesto", "imposto", "btw"),
    ),
    "discount": (
        ("rabatt", "remise", "descuento", "sconto", "desconto", "korting"),
        ("rabatt", "nachlass", "remise", "descuento", "sconto", "desconto", "korting"),
    ),
    "cash": (
        ("bargeld", "gegeben", "especes", "efectivo", "contanti", "dinheiro", "contant"),
        ("bar", "gegeben", "bargeld", "especes", "montant recu", "efectivo", "entregado",
         "contanti", "contante", "dinheiro", "valor recebido", "contant", "ontvangen"),
    ),
    "change": (
        ("ruckgeld", "wechselgeld", "rendu", "monnaie", "cambio", "vuelto", "resto", "troco",
         "wisselgeld"),
        ("ruckgeld", "wechselgeld", "zuruck", "rendu", "monnaie rendue", "a rendre", "cambio",
         "vuelto", "resto", "troco", "wisselgeld", "terug"),
    ),
    "document_number": (
        ("rechnungsnummer", "rechnung nr", "belegnummer", "numero de facture", "facture n",
         "numero de factura", "factura n", "numero fattura", "fattura n", "numero da fatura",
         "fatura n", "factuurnummer", "factuur nr"),
        ("rechnungsnummer", "rechnung nr", "rechnungs nr", "beleg nr", "belegnummer", "bon nr",
         "numero de facture", "facture n", "facture no", "ticket n", "numero de factura",
         "factura n", "factura no", "numero fattura", "fattura n", "scontrino n",
         "numero da fatura", "fatura n", "factuurnummer", "factuur nr", "bonnummer", "nr", "n"),
    ),
    "due_date": (
        ("falligkeit", "falligkeitsdatum", "zahlbar bis", "echeance", "vencimiento", "scadenza",
         "vencimento", "vervaldatum"),
        ("falligkeitsdatum", "fallig am", "zahlbar bis", "date d echeance", "echeance",
         "fecha de vencimiento", "vencimiento", "data di scadenza", "scadenza",
         "data de vencimento", "vencimento", "vervaldatum"),
    ),
    "date": (
        ("datum", "fecha", "data"),
        ("datum", "rechnungsdatum", "belegdatum", "date de facture", "fecha", "fecha de factura",
         "data", "data fattura", "data de emissao", "factuurdatum"),
    ),
    "buyer": (
        ("kunde", "rechnungsempfanger", "facture a", "cliente", "klant"),
        ("kunde", "rechnungsempfanger", "empfanger", "client", "facture a", "cliente",
         "facturar a", "destinatario", "klant"),
    ),
    "seller": (
        ("verkaufer", "firma", "lieferant", "geschaft", "vendeur", "fournisseur", "societe",
         "magasin", "vendedor", "proveedor", "empresa", "tienda", "fornitore", "venditore",
         "azienda", "negozio", "fornecedor", "loja", "leverancier", "verkoper", "bedrijf",
         "winkel"),
        ("verkaufer", "lieferant", "firma", "vendeur", "fournisseur", "societe", "vendedor",
         "proveedor", "empresa", "fornitore", "venditore", "ditta", "fornecedor", "leverancier",
         "verkoper", "bedrijf"),
    ),
    "address": (
        ("anschrift", "adresse", "direccion", "domicilio", "indirizzo", "endereco", "morada",
         "adres"),
        ("anschrift", "adresse", "direccion", "domicilio", "indirizzo", "endereco", "morada",
         "adres"),
    ),
    "tax_id": (
        ("steuernummer", "ust id", "ust idnr", "numero de tva", "nif", "cif", "partita iva",
         "btw nummer"),
        ("ust idnr", "ust id", "steuernummer", "st nr", "n tva", "numero de tva", "siret", "nif",
         "cif", "p iva", "partita iva", "codice fiscale", "nipc", "btw nummer", "btw nr", "kvk"),
    ),
    "phone": (
        ("telefon", "telephone", "telefono", "telefone", "telefoon"),
        ("telefon", "tel", "telephone", "telefono", "telefone", "telefoon"),
    ),
    "payment_method": (
        ("zahlungsart", "mode de paiement", "forma de pago", "metodo di pagamento",
         "forma de pagamento", "betaalwijze"),
        ("zahlungsart", "zahlart", "mode de paiement", "reglement", "forma de pago",
         "pagamento", "forma de pagamento", "betaalwijze"),
    ),
    "cashier": (
        ("kassierer", "caissier", "cajero", "cassiere", "operador", "kassier"),
        ("kassierer", "bediener", "caissier", "cajero", "cassiere", "operador", "kassier"),
    ),
}  # fmt: skip


def _with_european(concept: Concept) -> Concept:
    cues, labels = _EUROPEAN.get(concept.name, ((), ()))
    return Concept(
        concept.name,
        concept.cues + tuple(c for c in cues if c not in concept.cues),
        concept.labels + tuple(label for label in labels if label not in concept.labels),
        concept.value_type,
        concept.scenes,
    )


CONCEPTS: tuple[Concept, ...] = tuple(_with_european(c) for c in _CONCEPTS)

# Column headings of line-item tables, keyed by the role a column plays.
COLUMN_LABELS: dict[str, tuple[str, ...]] = {
    "name": (
        "description",
        "desc",
        "item",
        "items",
        "product",
        "particulars",
        "details",
        "name",
        "item name",
        "article",
        "service",
        "goods",
        "test",
        "test name",
        "drug",
        "medicine",
        "商品名称",
        "项目名称",
        "货物或应税劳务名称",
        "货物或应税劳务、服务名称",
        "品名",
        "名称",
        "项目",
        "检验项目",
        "药品名称",
        "药名",
        "收费项目",
        "费用项目",
    ),
    "quantity": ("qty", "quantity", "qnty", "pcs", "units", "数量", "件数"),
    "unit_price": (
        "price",
        "unit price",
        "u.price",
        "u/price",
        "rate",
        "unit cost",
        "each",
        "单价",
        "价格",
    ),
    "amount": ("amount", "total", "amt", "line total", "金额", "合计", "小计", "总价", "费用"),
    "unit": ("unit", "uom", "单位", "规格"),
    "result": ("result", "value", "结果", "检验结果", "测定值"),
    "reference": (
        "reference",
        "ref range",
        "reference range",
        "normal range",
        "参考范围",
        "参考值",
        "参考区间",
    ),
    "code": ("code", "sku", "item code", "编码", "代码"),
    "tax": ("tax", "gst", "vat", "税额", "税率"),
    "date": ("date", "日期"),
}

# Role of a table column from its key and description (first match wins).
_COLUMN_ROLE_CUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("amount", ("total price", "line total", "total amount", "item total", "总价")),
    ("unit_price", ("unit price", "price", "rate", "单价", "unit cost")),
    ("quantity", ("qty", "quantity", "数量", "count", "pcs")),
    ("reference", ("reference", "range", "参考")),
    ("result", ("result", "value", "结果")),
    ("unit", ("unit", "uom", "单位", "规格", "spec")),
    ("tax", ("tax", "gst", "vat", "税")),
    ("amount", ("amount", "total", "amt", "sum", "金额", "合计", "费用", "cost", "price")),
    ("code", ("code", "sku", "编码", "代码")),
    ("date", ("date", "日期")),
    ("name", ("name", "description", "item", "product", "名称", "项目", "品名", "desc")),
)


def _phrase_in(phrase: str, words: str) -> bool:
    if phrase.isascii():
        return f" {phrase} " in words
    return phrase in words


def normalise_words(text: str) -> str:
    """Lower-case words joined by single spaces, padded by one space on each side."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", fold_accents(text))
    tokens = re.findall(r"[a-z0-9]+|#|%|[^\x00-\x7f]+", spaced.lower().replace("_", " "))
    return " " + " ".join(tokens) + " "


def match_concept(
    key: str, description: str, scene: Scene, value_type: ValueType | None = None
) -> Concept | None:
    """The concept a key is about, by the longest cue found in its name and description.

    With ``value_type``, only concepts of that type (or untyped ones) qualify, so
    "merchant address" is an address rather than the merchant.
    """
    words = normalise_words(f"{description} {key}")
    best: tuple[int, Concept] | None = None
    for concept in CONCEPTS:
        if scene not in concept.scenes:
            continue
        if value_type is not None and concept.value_type not in (None, value_type):
            continue
        for cue in concept.cues:
            if _phrase_in(cue, words) and (best is None or len(cue) > best[0]):
                best = (len(cue), concept)
    return best[1] if best else None


def label_variants(key: str, description: str, concept: Concept | None) -> list[str]:
    """Labels to look for in the document, the prompt's own words first."""
    variants: list[str] = []
    for text in (description, re.sub(r"[_\-]+", " ", key)):
        cleaned = text.strip(" :\uff1a")
        if cleaned and cleaned.lower() not in (v.lower() for v in variants):
            variants.append(cleaned)
    if concept is not None:
        for label in concept.labels:
            if label.lower() not in (v.lower() for v in variants):
                variants.append(label)
    return variants


def column_role(key: str, description: str) -> str:
    """The part a table column plays (name, quantity, unit_price, amount, ...), else "other"."""
    words = normalise_words(f"{key} {description}")
    for role, cues in _COLUMN_ROLE_CUES:
        if any(_phrase_in(cue, words) for cue in cues):
            return role
    return "other"


# A date key's role in a range, from its words (key and description), in the languages the
# labels list covers: the first date of a printed range, or the second.
_START_WORDS = re.compile(
    r"(?:^|[\W_])(?:start|starts|starting|begin|begins|beginning|from|since|check[\W_]?in|"
    r"arrival|commencement|von|ab|beginn|début|debut|du|inicio|desde|dal|da|van|开始|起)(?:$|[\W_])",
    re.IGNORECASE,
)
_END_WORDS = re.compile(
    r"(?:^|[\W_])(?:end|ends|ending|until|till|to|through|thru|check[\W_]?out|departure|"
    r"expiry|expires|bis|ende|fin|hasta|al|tot|结束|止)(?:$|[\W_])",
    re.IGNORECASE,
)
_ROLE_AND_GENERIC = re.compile(
    rf"{_START_WORDS.pattern}|{_END_WORDS.pattern}|"
    r"(?:^|[\W_])(?:date|dates|day|datum|fecha|data|the|of|a|an|period)(?:$|[\W_])",
    re.IGNORECASE,
)


def date_role(words: str) -> str | None:
    """ "start" or "end" when a date key asks for one end of a range, else None."""
    start, end = bool(_START_WORDS.search(words)), bool(_END_WORDS.search(words))
    if start == end:
        return None
    return "start" if start else "end"


def subject_words(words: str) -> list[str]:
    """A range key's other words ("flight" of flight_start_date), lower case, 3+ letters."""
    rest = _ROLE_AND_GENERIC.sub(" ", words.replace("_", " ").replace("-", " "))
    rest = _ROLE_AND_GENERIC.sub(" ", rest)
    return sorted({w.lower() for w in re.findall(r"[^\W\d_]{3,}", rest)})


# Words that make an amount one particular figure, not the payable total, as labels print
# them in the languages the labels list covers.
_QUALIFIERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("subtotal", ("subtotal", "sub total", "sub-total", "zwischensumme", "sous-total",
                  "sous total", "subtotale", "subtotaal", "小计")),
    ("gross", ("gross", "brutto", "brut", "bruto", "lordo")),
    ("net", ("net", "netto", "neto", "nett")),
    ("tax", ("tax", "vat", "gst", "mwst", "ust", "tva", "iva", "btw", "税")),
    ("discount", ("discount", "rabatt", "remise", "descuento", "sconto", "korting")),
    ("commission", ("commission", "agency commission", "provision", "comisión")),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Qualifier:
    """What an amount key asks for ("gross" of gross_amount): its words as labels print
    them, and a pattern that finds one of them."""

    name: str
    words: tuple[str, ...]
    printed: re.Pattern[str]


def _qualifier(name: str, variants: tuple[str, ...]) -> Qualifier:
    alternatives = "|".join(re.escape(v).replace(r"\ ", r"[\W_]?") for v in variants)
    printed = re.compile(rf"(?:^|[\W_\d])(?:{alternatives})(?:$|[\W_\d])", re.IGNORECASE)
    return Qualifier(name, variants, printed)


_QUALIFIER_PATTERNS = tuple(_qualifier(name, variants) for name, variants in _QUALIFIERS)


def qualifier_named(name: str) -> Qualifier:
    """The qualifier called ``name`` ("net", "commission")."""
    return next(q for q in _QUALIFIER_PATTERNS if q.name == name)


def total_qualifier(words: str) -> Qualifier | None:
    """The qualifier an amount key carries, else None."""
    return next((q for q in _QUALIFIER_PATTERNS if q.printed.search(words)), None)


# Words that make a key without "date" in it ask for a date all the same (period_from).
_PERIOD_WORDS = re.compile(
    r"(?:^|[\W_])(?:period|range|stay|term|window|flight|zeitraum|période|periode|periodo|"
    r"check[\W_]?in|check[\W_]?out|valid)(?:$|[\W_])",
    re.IGNORECASE,
)


def asks_for_a_date(words: str) -> bool:
    """A key like period_from or check_out: one end of a range of dates."""
    return date_role(words) is not None and bool(_PERIOD_WORDS.search(words))
