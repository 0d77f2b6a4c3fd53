"""Merging the answers to a long document's chunks of pages: what one document's result
looks like when its pages were read a few at a time."""

from __future__ import annotations

from extraction.merge import join_texts, merge_answers


def test_the_first_chunk_that_shows_a_field_gives_it() -> None:
    merged = merge_answers(
        [
            {"invoice_no": "A-17", "total": None, "seller": "ACME"},
            {"invoice_no": "A-18", "total": "99.50", "seller": "Other"},
            {"invoice_no": None, "total": "12.00", "seller": None},
        ]
    )
    assert merged == {"invoice_no": "A-17", "total": "99.50", "seller": "ACME"}


def test_a_blank_text_an_empty_list_or_object_is_filled_by_a_later_chunk() -> None:
    merged = merge_answers(
        [
            {"date": "  ", "notes": [], "buyer": {}},
            {"date": "2024-05-01", "notes": ["paid"], "buyer": {"name": "Bo"}},
        ]
    )
    assert merged == {"date": "2024-05-01", "notes": ["paid"], "buyer": {"name": "Bo"}}


def test_zero_and_false_are_values_not_gaps() -> None:
    merged = merge_answers([{"discount": 0, "paid": False}, {"discount": 5, "paid": True}])
    assert merged == {"discount": 0, "paid": False}


def test_line_items_running_over_pages_are_all_kept_in_page_order() -> None:
    merged = merge_answers(
        [
            {"items": [{"name": "bolts"}, {"name": "nuts"}], "total": None},
            {"items": [], "total": None},
            {"items": [{"name": "washers"}], "total": "40.00"},
        ]
    )
    assert merged == {
        "items": [{"name": "bolts"}, {"name": "nuts"}, {"name": "washers"}],
        "total": "40.00",
    }


def test_nested_objects_merge_key_by_key() -> None:
    merged = merge_answers(
        [
            {"seller": {"name": "ACME", "address": None, "phones": ["1"]}},
            {"seller": {"name": "Footer Ltd", "address": "1 Road", "phones": ["2"]}},
        ]
    )
    assert merged == {"seller": {"name": "ACME", "address": "1 Road", "phones": ["1", "2"]}}


def test_keys_only_later_chunks_have_come_after_the_earlier_ones() -> None:
    merged = merge_answers([{"a": 1}, {"b": 2, "a": 3}])
    assert list(merged) == ["a", "b"]
    assert merged == {"a": 1, "b": 2}


def test_a_top_level_list_is_concatenated_and_other_values_take_the_first_non_null() -> None:
    assert merge_answers([[{"row": 1}], None, [{"row": 2}]]) == [{"row": 1}, {"row": 2}]
    assert merge_answers([None, "first", "second"]) == "first"
    assert merge_answers([None, 7, 8]) == 7


def test_values_of_mixed_kinds_keep_the_first_that_says_something() -> None:
    assert merge_answers([{"x": None}, ["a"]]) == {"x": None}
    assert merge_answers([{"total": "12"}, {"total": {"amount": "12"}}]) == {"total": "12"}


def test_when_no_chunk_says_anything_the_shape_is_kept() -> None:
    assert merge_answers([None, None]) is None
    assert merge_answers([[], []]) == []
    assert merge_answers([None, ""]) == ""
    assert merge_answers([{"a": None}, {"a": None}]) == {"a": None}
    assert merge_answers([]) is None


def test_texts_are_joined_in_page_order_by_a_blank_line() -> None:
    assert join_texts(["Page one says hi.\n", "  ", "Page two.\n\n"]) == (
        "Page one says hi.\n\nPage two."
    )
