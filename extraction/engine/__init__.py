"""The embedded extraction engine behind the ``local`` provider.

OCR (``ocr``) -> rows and reading order (``layout``) -> the prompt's schema (``schema``)
filled by label search (``labels``, ``vocabulary``, ``values``), issuer rules (``merchant``),
payable totals (``totals``) and line items (``tables``); ``document`` ties them together.
"""
