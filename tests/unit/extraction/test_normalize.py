"""Typed dates and amounts beside the printed values."""

from __future__ import annotations

from extraction.normalize import normalize


def test_dates_become_iso_and_amounts_decimal_with_their_currency() -> None:
    result = {
        "date": "13/01/2020",
        "due": "Jan 20, 2020",
        "total": "RM 1,017.40",
        "items": [{"name": "Bolt 12", "price": "1.234,50 €"}],
        "invoice_no": "INV-20451",
    }
    assert normalize(result) == {
        "date": "2020-01-13",
        "due": "2020-01-20",
        "total": {"amount": "1017.40", "currency": "RM"},
        "items[0].price": {"amount": "1234.50", "currency": "€"},
    }


def test_the_other_dates_settle_which_way_round_an_ambiguous_one_is_read() -> None:
    us = normalize({"flight_start": "01/06/2020", "flight_end": "01/19/2020"})
    assert us == {"flight_start": "2020-01-06", "flight_end": "2020-01-19"}
    day_first = normalize({"issued": "01/06/2020", "paid": "19/06/2020"})
    assert day_first == {"issued": "2020-06-01", "paid": "2020-06-19"}


def test_values_that_are_neither_are_left_out() -> None:
    assert normalize({"name": "Greenleaf", "qty": "3", "note": None, "code": "A-17"}) == {}
