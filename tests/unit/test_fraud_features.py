"""The feature registry in batch: point in time, optional columns, sizes of the two layers."""

from datetime import timedelta

import polars as pl
import pytest

from lakehouse.fraud.config import SETTINGS, WorldConfig
from lakehouse.fraud.features import FEATURE_NAMES, LAYER2_FEATURES, available, batch_features
from lakehouse.fraud.model import DaySplit, train
from lakehouse.fraud.rules import batch_rules, build_lists
from lakehouse.fraud.world import generate_days

WORLD = WorldConfig(tx_per_day=1500, days=3, seed=4)


@pytest.fixture(scope="module")
def tx():
    return generate_days(WORLD)


def test_registry_has_two_layers_of_the_seed_sizes():
    assert len(FEATURE_NAMES) >= 200 and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert 45 <= len(LAYER2_FEATURES) <= 55 and set(LAYER2_FEATURES) <= set(FEATURE_NAMES)


def test_future_transactions_do_not_change_past_features(tx):
    cut = tx["ts"].min() + timedelta(days=2)
    past = tx.filter(pl.col("ts") < cut)
    before = batch_features(past).sort("tx_id")
    future = tx.filter(pl.col("ts") >= cut)
    # the same customers, cards, devices and IBANs come back later, some of them at the cut itself
    edited = future.with_columns(pl.col("amount_eur") * 7, ts=pl.when(pl.int_range(pl.len()) < 20).then(pl.lit(cut)).otherwise(pl.col("ts")))
    after = batch_features(pl.concat([past, edited])).filter(pl.col("tx_id").is_in(past["tx_id"].implode())).sort("tx_id")
    assert before.equals(after)
    assert after["customer_count_1d"].sum() > 0


def test_a_window_counts_only_earlier_transactions_of_the_entity():
    base = {"customer_id": "C1", "card_id": "K1", "merchant_id": "M1", "channel": "ecommerce", "is_fraud": False}
    t0 = pl.datetime(2026, 1, 1)
    df = pl.DataFrame(
        [{**base, "tx_id": f"T{i}", "ts": s, "amount_eur": a} for i, (s, a) in enumerate([(0, 2.0), (30, 3.0), (59, 50.0), (61, 4.0), (400, 1.0)])]
    ).with_columns(ts=t0 + pl.duration(seconds=pl.col("ts")))
    f = batch_features(df).sort("ts")
    assert f["card_count_1m"].to_list() == [0, 1, 2, 2, 0]  # [t - 60 s, t): the event at 0 s leaves the 61 s window
    assert f["card_small_5m"].to_list() == [0, 1, 2, 2, 0]  # at 400 s the 5-minute window starts at 100 s
    assert f["customer_count_15m"].to_list() == [0, 1, 2, 3, 4]
    assert f["customer_max_15m"].to_list() == [0, 2.0, 3.0, 50.0, 50.0]
    assert f["cust_tx_before"].to_list() == [0, 1, 2, 3, 4]


def test_missing_optional_columns_leave_their_features_out_and_the_rest_trains():
    world = WorldConfig(tx_per_day=2500, days=8, seed=6)
    tx = generate_days(world).drop("device_id", "ip", "payee_iban", "lat", "lon")
    names = available(tx.columns)
    assert "new_device" not in names and "ip_count_1h" not in names and "dist_prev_km" not in names and "iban_count_1d" not in names
    assert "customer_count_1m" in names and "new_country" in names
    features = batch_features(tx)
    assert set(features.columns) >= set(names) and "device_count_1h" not in features.columns
    split = DaySplit.from_days(world.day_keys, SETTINGS)
    lists = build_lists(split.frame(tx, "train"), SETTINGS)
    assert lists.ibans == frozenset() and lists.ips == frozenset()
    cascade = train(features.join(batch_rules(features, tx, lists, SETTINGS), on="tx_id"), split, SETTINGS)
    assert "new_device" not in cascade.layer2_features and "customer_count_1m" in cascade.layer2_features
