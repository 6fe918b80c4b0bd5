"""The feature registry in batch: point in time (future payments and late labels), window and
history semantics, the label delay, optional columns, sizes of the two layers."""

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from lakehouse.fraud.features_batch import batch_features
from lakehouse.fraud.features_registry import DAY_MS, registry_for
from lakehouse.fraud.settings import FraudSettings
from lakehouse.fraud.world import WorldConfig, generate_days

SETTINGS = FraudSettings()
REGISTRY = registry_for(SETTINGS)
WORLD = WorldConfig(tx_per_day=1500, days=3, seed=4)


@pytest.fixture(scope="module")
def tx():
    return generate_days(WORLD)


def _payments(rows: list[dict], **common) -> pl.DataFrame:
    base = {
        "customer_id": "C1",
        "card_id": "K1",
        "merchant_id": "M1",
        "channel": "ecommerce",
        "is_fraud": False,
        "amount": 10.0,
    } | common
    return pl.DataFrame([base | r for r in rows]).with_columns(pl.col("ts").cast(pl.Datetime("ms")))


def test_registry_has_the_windows_of_the_settings_and_two_layers():
    names = REGISTRY.names
    assert len(names) == len(set(names)) and len(names) >= 250
    for window in ("1d", "7d", "30d"):
        assert {
            f"customer_count_{window}",
            f"customer_mean_{window}",
            f"customer_max_{window}",
            f"amount_vs_customer_{window}",
        } <= set(names)
    for days in (1, 7, 30):
        assert {
            f"merchant_hist_count_{days}d",
            f"merchant_hist_frauds_{days}d",
            f"merchant_hist_fraud_rate_{days}d",
            f"category_hist_fraud_rate_{days}d",
        } <= set(names)
    assert {"secs_since_prev", "hour", "weekday", "home_dist_km"} <= set(names)
    assert 45 <= len(REGISTRY.layer2) <= 80 and set(REGISTRY.layer2) <= set(names)
    assert not any(n.startswith("merchant_count_") for n in REGISTRY.layer2)  # exact merchant windows: layer 3 only
    shorter = registry_for(SETTINGS.with_(features={"history_days": [2], "customer_windows": ["P14D"]}))
    assert (
        "merchant_hist_fraud_rate_2d" in shorter.names
        and "customer_count_14d" in shorter.names
        and "customer_count_30d" not in shorter.names
    )


def test_future_payments_and_late_labels_do_not_change_past_features(tx):
    cut = tx["ts"].min() + timedelta(days=2)
    before = batch_features(tx, REGISTRY).filter(pl.col("ts") < cut).sort("tx_id")
    future = tx.filter(pl.col("ts") >= cut)
    # the same customers, cards, merchants come back later, some of them at the cut itself
    edited = future.with_columns(
        pl.col("amount") * 7, ts=pl.when(pl.int_range(pl.len()) < 20).then(pl.lit(cut)).otherwise(pl.col("ts"))
    )
    # and every label not yet known at the cut (payments within the label delay) flips
    delay = timedelta(days=SETTINGS.features.label_delay_days)
    past = tx.filter(pl.col("ts") < cut).with_columns(
        is_fraud=pl.when(pl.col("ts") + delay > cut).then(~pl.col("is_fraud")).otherwise(pl.col("is_fraud"))
    )
    after = batch_features(pl.concat([past, edited]), REGISTRY).filter(pl.col("ts") < cut).sort("tx_id")
    features = [c for c in before.columns if c not in ("is_fraud",)]
    assert before.select(features).equals(after.select(features))
    assert after["customer_count_1d"].sum() > 0


def test_a_window_counts_only_earlier_transactions_of_the_entity():
    t0 = datetime(2026, 1, 1)
    df = _payments(
        [
            {"tx_id": f"T{i}", "ts": t0 + timedelta(seconds=s), "amount": a}
            for i, (s, a) in enumerate([(0, 2.0), (30, 3.0), (59, 50.0), (61, 4.0), (400, 1.0)])
        ]
    )
    f = batch_features(df, REGISTRY).sort("ts")
    assert f["card_count_1m"].to_list() == [0, 1, 2, 2, 0]  # [t - 60 s, t): the event at 0 s leaves the 61 s window
    assert f["card_small_5m"].to_list() == [0, 1, 2, 2, 0]  # at 400 s the 5-minute window starts at 100 s
    assert f["customer_count_15m"].to_list() == [0, 1, 2, 3, 4]
    assert f["customer_max_15m"].to_list() == [0, 2.0, 3.0, 50.0, 50.0]
    assert f["cust_tx_before"].to_list() == [0, 1, 2, 3, 4]
    assert f["amount_vs_customer_1d"].to_list() == pytest.approx(
        [1.0, 3.0 / 2.0, 50.0 / 2.5, 4.0 * 3 / 55.0, 1.0 * 4 / 59.0]
    )


def test_history_counts_whole_days_and_fraud_only_after_the_label_delay():
    """Merchant M1: one payment a day for 40 days, the first three frauds; a payment on day d sees
    activity over days [d - n, d - 1] and fraud over [d - delay - n, d - delay - 1]."""
    delay = SETTINGS.features.label_delay_days
    start = datetime(2026, 1, 1, 12)
    df = _payments(
        [
            {"tx_id": f"T{d:02d}", "ts": start + timedelta(days=d), "is_fraud": d < 3, "amount": 10.0 + d}
            for d in range(40)
        ],
        category="games",
    )
    f = batch_features(df, REGISTRY).sort("ts")
    day = {row["tx_id"]: row for row in f.iter_rows(named=True)}
    assert (
        day["T00"]["merchant_hist_count_1d"] == 0
        and day["T05"]["merchant_hist_count_7d"] == 5
        and day["T35"]["merchant_hist_count_30d"] == 30
    )
    assert day["T05"]["merchant_hist_mean_7d"] == pytest.approx(sum(10.0 + d for d in range(5)) / 5)
    # the frauds of days 0-2 count from day 0 + delay + 1 on, and leave the 7-day window after day 2 + delay + 7
    assert [
        day[f"T{d:02d}"]["merchant_hist_frauds_7d"]
        for d in (delay, delay + 1, delay + 3, delay + 7, delay + 9, delay + 10)
    ] == [0, 1, 3, 3, 1, 0]
    assert day[f"T{delay + 3:02d}"]["merchant_hist_fraud_rate_7d"] == pytest.approx(3 / 3)
    assert day[f"T{delay + 7:02d}"]["merchant_hist_fraud_rate_7d"] == pytest.approx(3 / 7)
    assert day[f"T{delay + 7:02d}"]["category_hist_frauds_30d"] == 3
    # a label delay of 0 makes yesterday's fraud known today
    now = registry_for(SETTINGS.with_(features={"label_delay_days": 0}))
    assert batch_features(df, now).sort("ts")["merchant_hist_frauds_1d"].to_list()[:5] == [0, 1, 1, 1, 0]


def test_hour_and_weekday_follow_the_configured_time_zone():
    df = _payments([{"tx_id": "T1", "ts": datetime(2024, 7, 1, 2, 30)}])  # a Monday, 02:30 UTC
    utc = batch_features(df, REGISTRY)
    eastern = batch_features(df, registry_for(SETTINGS.with_(features={"hour_timezone": "America/New_York"})))
    assert (utc["hour"][0], utc["weekday"][0]) == (2, 1)
    assert (eastern["hour"][0], eastern["weekday"][0]) == (22, 7)  # 22:30 on Sunday in New York (EDT)


def test_missing_optional_columns_leave_their_features_out():
    tx = generate_days(WorldConfig(tx_per_day=800, days=2, seed=6)).drop(
        "device_id", "ip", "payee_iban", "lat", "lon", "category", "customer_lat", "customer_lon"
    )
    names = REGISTRY.available(tx.columns)
    for gone in (
        "new_device",
        "ip_count_1h",
        "dist_prev_km",
        "iban_count_1d",
        "category_hist_fraud_rate_30d",
        "home_dist_km",
    ):
        assert gone not in names
    assert {"customer_count_1m", "new_country", "merchant_hist_fraud_rate_30d", "amount_vs_merchant_30d"} <= set(names)
    features = batch_features(tx, REGISTRY)
    assert set(features.columns) >= set(names) and "device_count_1h" not in features.columns


def test_day_buckets_are_utc_days():
    assert DAY_MS == 86_400_000
    df = _payments(
        [{"tx_id": "a", "ts": datetime(2026, 1, 1, 23, 59)}, {"tx_id": "b", "ts": datetime(2026, 1, 2, 0, 1)}]
    )
    f = batch_features(df, REGISTRY).sort("ts")
    assert f["merchant_hist_count_1d"].to_list() == [0, 1] and f["day"].to_list() == [
        date(2026, 1, 1),
        date(2026, 1, 2),
    ]


# Features that add amounts up: the same up to the order of floating-point additions.
SUMMED = ("_sum_", "_mean_", "cust_mean_amount", "cust_std_amount", "amount_z", "amount_ratio_mean", "amount_vs_")


@pytest.fixture(scope="module")
def forty_days():
    """40 days, so that the 7- and 30-day windows and the 30-day history with its label delay have days wholly
    inside them, with the features over the whole history."""
    world = generate_days(WorldConfig(tx_per_day=1200, days=40, seed=8))
    return world, batch_features(world, REGISTRY)


@pytest.mark.parametrize("offset_h", [0, 2])  # a UTC day, and a day of a zone two hours ahead of UTC
def test_a_day_with_summaries_of_the_days_before_has_the_features_of_the_whole_history(forty_days, offset_h):
    """A day's features from its own rows and the earlier rows read lazily (raw rows at the windows' edges,
    per-entity totals, the profile, daily totals) against the features over the whole history."""
    world, whole = forty_days
    for day_index in (20, 39):
        start = world["ts"].min().replace(hour=0, minute=0, second=0, microsecond=0)
        lo = start + timedelta(days=day_index, hours=-offset_h)
        day = world.filter((pl.col("ts") >= lo) & (pl.col("ts") < lo + timedelta(days=1)))
        before = world.filter(pl.col("ts") < lo).lazy()
        got = batch_features(day, REGISTRY, before=before).sort("tx_id")
        want = whole.filter(pl.col("tx_id").is_in(day["tx_id"].implode())).sort("tx_id")
        assert got.columns == want.columns and got["tx_id"].equals(want["tx_id"]) and got.height == day.height
        summed = []
        for column in want.columns:
            if got[column].equals(want[column]):
                continue
            assert any(s in column for s in SUMMED), column
            assert got[column].to_list() == pytest.approx(want[column].to_list(), rel=1e-9, abs=1e-9), column
            summed.append(column)
        assert "customer_distinct_merchant_30d" not in summed and want["customer_count_30d"].min() > 0


def _same_features(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.columns == want.columns and got["tx_id"].equals(want["tx_id"])
    for column in want.columns:
        if not got[column].equals(want[column]):
            assert any(s in column for s in SUMMED), column
            assert got[column].to_list() == pytest.approx(want[column].to_list(), rel=1e-9, abs=1e-9), column


def test_a_sample_of_a_day_and_a_few_features_are_those_of_the_whole_history(forty_days):
    """A training sample (the frauds and a tenth of the rest) gets from its day's other rows, as context, and
    the summaries of the days before the same features as in the whole history; so do a few named features."""
    world, whole = forty_days
    lo = world["ts"].min().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=38)
    day = world.filter((pl.col("ts") >= lo) & (pl.col("ts") < lo + timedelta(days=1)))
    before = world.filter(pl.col("ts") < lo).lazy()
    sample = day.filter(pl.col("is_fraud") | (pl.int_range(pl.len()) % 10 == 0))["tx_id"]
    got = batch_features(day, REGISTRY, before=before, targets=sample).sort("tx_id")
    _same_features(got, whole.filter(pl.col("tx_id").is_in(sample.implode())).sort("tx_id"))
    assert 0 < got.height < day.height / 5
    few = ["merchant_hist_fraud_rate_30d", "amount_vs_customer_7d", "customer_distinct_merchant_30d", "new_ip"]
    got = batch_features(day, REGISTRY, before=before, names=few).sort("tx_id")
    want = whole.filter(pl.col("tx_id").is_in(day["tx_id"].implode())).sort("tx_id")
    _same_features(got, want.select(*want.columns[:8], *[n for n in REGISTRY.names if n in few]))
