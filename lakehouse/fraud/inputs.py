"""What the fraud service accepts, by the loader's rules: the one id rule (`lakehouse.common.ids`) on
every id, which becomes a Redis key and a row of the decision log; strict types (no boolean or text
for a number, no number for a time or a flag); amounts from 0 (authorisation checks) to below the
plausibility bound; coordinates in range; no field the models do not know.

The models are built from the limits of the settings (`InputLimits.of`, `input_models`), so the API and
the loader refuse the same values.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict

from lakehouse.common.ids import ID_RULE, MAX_ID_LENGTH, id_problem, normalise, shown
from lakehouse.fraud.settings import FraudSettings

ID_FIELDS = ("tx_id", "customer_id", "card_id", "merchant_id", "device_id", "ip", "payee_iban", "category")


@dataclass(frozen=True)
class InputLimits:
    """The loader's limits on what the service takes: the longest id, and the amount's range (at least 0, below
    `plausibility.max_amount`, unless the settings bound `transactions.amount` themselves, both ends included)."""

    max_id_length: int = MAX_ID_LENGTH
    amount_min: float = 0.0
    amount_below: float | None = 1e9
    amount_max: float | None = None

    @classmethod
    def of(cls, settings: FraudSettings) -> "InputLimits":
        plausibility = settings.plausibility
        bound = plausibility.columns.get("transactions.amount")
        low = bound.min if bound is not None and isinstance(bound.min, int | float) else None
        high = bound.max if bound is not None and isinstance(bound.max, int | float) else None
        return cls(
            plausibility.max_id_length,
            max(0.0, float(low)) if low is not None else 0.0,
            None if high is not None else plausibility.max_amount,
            float(high) if high is not None else None,
        )


def _valid_id(value: str, max_length: int) -> str:
    if (reason := id_problem(value, max_length=max_length)) is not None:
        raise ValueError(f"invalid id: it {reason}")
    return normalise(value)


def _iso_text(value):
    """A time is ISO 8601 text (a number would be read as seconds or milliseconds by guess)."""
    if not isinstance(value, str | datetime):
        raise ValueError("a time is ISO 8601 text, e.g. 2026-11-30T14:05:00Z")
    return value


Time = Annotated[datetime, BeforeValidator(_iso_text)]
Number = Annotated[float, Strict()]  # an integer is a number; true, false and "1.5" are not


def input_models(limits: InputLimits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The request bodies of POST /decisions and POST /labels under these limits."""
    rule = ID_RULE.format(max_length=limits.max_id_length)
    valid = AfterValidator(partial(_valid_id, max_length=limits.max_id_length))
    Id = Annotated[str, Strict(), valid, Field(description=f"An id: {rule}.")]

    class TransactionIn(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

        tx_id: Id = Field(description="Unique transaction id (idempotency key of the feature update).")
        ts: Time | None = Field(
            None,
            description=(
                "Event time (ISO 8601, UTC when naive); default: now. Refused when ahead of the service clock by "
                "more than the tolerance, or older than the longest feature window."
            ),
        )
        customer_id: Id
        card_id: Id
        merchant_id: Id
        channel: Annotated[str, Strict()] = Field(description="One of the settings' `channels`.")
        amount: Number = Field(
            ge=limits.amount_min,
            lt=limits.amount_below,
            le=limits.amount_max,
            description="In the settings' currency; 0 is an authorisation check.",
        )
        device_id: Id | None = None
        ip: Id | None = None
        payee_iban: Id | None = None
        country: Annotated[str, Strict()] | None = Field(None, pattern=r"^[A-Z]{2}$")
        category: Id | None = None
        lat: Number | None = Field(None, ge=-90, le=90)
        lon: Number | None = Field(None, ge=-180, le=180)
        customer_lat: Number | None = Field(None, ge=-90, le=90)
        customer_lon: Number | None = Field(None, ge=-180, le=180)

    class LabelIn(BaseModel):
        """A fraud label (chargeback, investigation) of an earlier payment."""

        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

        tx_id: Id
        ts: Time = Field(description="When the labelled payment was made.")
        merchant_id: Id
        category: Id | None = None
        is_fraud: Annotated[bool, Strict()] = True

    return TransactionIn, LabelIn


def event_problem(fields: dict[str, str], max_id_length: int = MAX_ID_LENGTH) -> str | None:
    """Why an event read from the stream breaks the id rule (a producer other than this service), or None."""
    for name in ID_FIELDS:
        value = fields.get(name)
        if value and (reason := id_problem(value, max_length=max_id_length)) is not None:
            return f"{name} {shown(value)} {reason}"
    return None
