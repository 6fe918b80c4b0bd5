"""The one id rule (lakehouse.common.ids), for one value (online) and for a column (batch)."""

import polars as pl
import pytest

from lakehouse.common.ids import ECHO_LIMIT, InvalidId, check_id, column_refusal, id_problem, normalised_column, shown

REFUSED = {
    "zero-width space": "C1\u200b",
    "right-to-left override": "a\u202eb",
    "C1 control": "x\u009b",
    "DEL": "x\x7f",
    "tab": "C\t1",
    "line separator": "a\u2028b",
    "private use": "\ue000",
    "unassigned": "a\u0378",
    "byte order mark": "\ufeffC1",
    "Hangul filler": "\u3164",
    "variation selector": "C1\ufe0f",
    "slash": "a/b",
    "backslash": "a\\b",
    "parent": "../etc",
    "dot": ".",
    "full-width dots": "\uff0e\uff0e",
    "full-width solidus": "a\uff0fb",
    "equals": "a=b",
    "leading space": " C1",
    "trailing no-break space": "C1\u00a0",
    "empty": "",
    "too long": "x" * 129,
    "a number": 5,
    "a boolean": True,
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_each_kind_of_bad_id_is_refused_online_and_in_batch(name):
    value = REFUSED[name]
    assert id_problem(value) is not None
    with pytest.raises(InvalidId) as info:
        check_id(value, field="customer_id")
    assert str(info.value).startswith("customer_id ")
    assert len(str(info.value)) < 200
    if isinstance(value, str):
        frame = pl.DataFrame({"id": ["C0", value, "C2"]})
        refusal = column_refusal(frame, "id")
        assert refusal is not None and refusal.rows["id"].to_list() == [value]


@pytest.mark.parametrize(
    "value", ["C1", "CA_1", "north-s001", "ÉCOLE-12", "東京-3", "a.b", "a b", "o'brien", "x" * 128]
)
def test_ordinary_ids_pass(value):
    assert id_problem(value) is None
    assert check_id(value) == value
    assert column_refusal(pl.DataFrame({"id": [value, "other"]}), "id") is None


def test_the_length_limit_is_a_parameter():
    assert id_problem("x" * 40, max_length=32) == "is 40 characters long (at most 32)"
    assert column_refusal(pl.DataFrame({"id": ["x" * 40]}), "id", max_length=32) is not None


def test_ids_are_nfc_and_equal_under_nfc_is_one_id():
    assert check_id("e\u0301") == "\u00e9"
    assert normalised_column(pl.DataFrame({"id": ["e\u0301", "x", None]}), "id")["id"].to_list() == [
        "\u00e9",
        "x",
        None,
    ]


def test_ids_equal_under_nfkc_or_but_for_whitespace_are_ambiguous_and_case_is_significant():
    frame = pl.DataFrame({"id": ["C1", "\uff23\uff11", "file", "\ufb01le", "C 2", "C2", "c2", "C3"]})
    refusal = column_refusal(frame, "id")
    assert refusal is not None
    assert set(refusal.rows["id"]) == {"C1", "\uff23\uff11", "file", "\ufb01le", "C 2", "C2"}
    assert "ambiguous" in refusal.reason
    assert column_refusal(pl.DataFrame({"id": ["c1", "C1", "\uff23\uff11\uff11"]}), "id") is None


def test_a_repeated_id_is_not_ambiguous_with_itself():
    assert column_refusal(pl.DataFrame({"id": ["\uff23\uff11", "\uff23\uff11", "C2"]}), "id") is None


def test_messages_echo_a_bounded_escaped_value():
    assert shown("C1\u200b") == "'C1\\u200b'"
    assert shown("\u3164") == "'\\u3164'"
    assert len(shown("x" * 60_000)) == ECHO_LIMIT
    with pytest.raises(InvalidId) as info:
        check_id("/" + "x" * 60_000)
    assert len(str(info.value)) < 120
