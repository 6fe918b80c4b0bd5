"""The fraud service's request bodies take the loader's rules: the id rule on every id, strict types,
amounts from zero, limits from the settings."""

import json

import pytest
from pydantic import ValidationError

from lakehouse.fraud.inputs import InputLimits, event_problem, input_models
from lakehouse.fraud.settings import FraudSettings

TransactionIn, LabelIn = input_models(InputLimits.of(FraudSettings()))
BODY = {
    "tx_id": "T1",
    "ts": "2026-11-30T10:00:00",
    "customer_id": "C1",
    "card_id": "K1",
    "merchant_id": "M1",
    "channel": "ecommerce",
    "amount": 12.5,
}


def _refused(model, body: dict) -> list[dict]:
    for parse in (lambda: model.model_validate(body), lambda: model.model_validate_json(json.dumps(body))):
        with pytest.raises(ValidationError) as err:
            parse()
    return err.value.errors()


@pytest.mark.parametrize(
    "change",
    [
        {"amount": True},
        {"amount": "12.5"},
        {"amount": -0.01},
        {"amount": 1e9},
        {"lat": True, "lon": 1.0},
        {"ts": 1_700_000_000},
        {"customer_id": 7},
        {"customer_id": "../etc"},
        {"customer_id": "C1\u200b"},
        {"merchant_id": "M\u202e1"},
        {"card_id": "K\x7f"},
        {"card_id": "K\u009b"},
        {"device_id": "\u3164"},
        {"ip": "１０．．１"},  # full-width: '..' under NFKC
        {"tx_id": "a=b"},
        {"category": "food "},
        {"payee_iban": "I" * 129},
        {"country": "FRA"},
    ],
)
def test_what_the_loader_refuses_the_api_refuses(change):
    errors = _refused(TransactionIn, {**BODY, **change})
    assert errors[0]["loc"][0] in change


def test_ids_are_stored_in_nfc_and_zero_is_an_amount():
    tx = TransactionIn.model_validate({**BODY, "customer_id": "Cafe\u0301", "amount": 0, "lat": 1, "lon": 2})
    assert tx.customer_id == "Caf\u00e9" and tx.amount == 0.0 and isinstance(tx.lat, float)


def test_an_id_error_says_why_without_the_value():
    (error,) = _refused(TransactionIn, {**BODY, "merchant_id": "M" * 5_000 + "\u200b"})
    assert "5001 characters long (at most 128)" in error["msg"] and "MMM" not in error["msg"]


def test_labels_take_the_same_rules():
    label = {"tx_id": "T1", "ts": "2026-11-30T10:00:00", "merchant_id": "M1"}
    assert LabelIn.model_validate(label).is_fraud is True
    for change in ({"is_fraud": "yes"}, {"is_fraud": 1}, {"tx_id": "a/b"}, {"ts": 17e8}, {"category": ""}):
        assert _refused(LabelIn, {**label, **change})[0]["loc"][0] in change


def test_the_limits_are_the_settings_plausibility():
    settings = FraudSettings(plausibility={"max_id_length": 4, "max_amount": 100.0})
    short, _ = input_models(InputLimits.of(settings))
    assert short.model_validate({**BODY, "customer_id": "C123", "amount": 99.99}).customer_id == "C123"
    assert _refused(short, {**BODY, "customer_id": "C1234"})[0]["loc"] == ("customer_id",)
    assert _refused(short, {**BODY, "amount": 100})[0]["loc"] == ("amount",)
    bounded = FraudSettings(plausibility={"columns": {"transactions.amount": {"min": 1, "max": 5e9}}})
    wide, _ = input_models(InputLimits.of(bounded))  # the column's own bounds, both ends included
    assert wide.model_validate({**BODY, "amount": 5e9}).amount == 5e9
    assert _refused(wide, {**BODY, "amount": 0.5})[0]["loc"] == ("amount",)


def test_events_from_another_producer_are_checked_too():
    assert event_problem({"tx_id": "T1", "customer_id": "C1", "merchant_id": "M1"}) is None
    problem = event_problem({"tx_id": "T1", "customer_id": "C1\u200bx"})
    assert problem.startswith("customer_id") and "U+200B" in problem
    problem = event_problem({"tx_id": "T1", "merchant_id": "M" * 5_000})
    assert problem.startswith("merchant_id") and len(problem) < 120
