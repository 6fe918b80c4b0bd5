"""The online store of forecasts in Redis, published atomically per run.

A run writes every store x SKU vector into its own hash `forecast:run:<run_id>` (field
`<store>|<sku>`, value JSON with the origin, the first period and the operational horizon), then switches the
pointer `forecast:current` in one MULTI/EXEC transaction, then deletes the previous run's
hash. A lookup reads the pointer and the field in one Lua script, so a reader sees either the
whole previous night or the whole new one, never a mix, even while the old hash is deleted.
"""

from __future__ import annotations

import json

import polars as pl

POINTER = "forecast:current"
ORIGIN = "forecast:current:origin"
RUN_PREFIX = "forecast:run:"
BATCH = 5_000

# KEYS[1] = pointer; ARGV[1] = field. Returns the field of the current run's hash, or nil.
LOOKUP_SCRIPT = """
local run = redis.call('GET', KEYS[1])
if not run then return nil end
return redis.call('HGET', ARGV[2] .. run, ARGV[1])
"""


def field(store_id: str, sku_id: str) -> str:
    return f"{store_id}|{sku_id}"


class ShadowForecast(ValueError):
    """Forecasts of a version that has not been promoted: they are evaluated, never served."""


def vectors(reconciled: pl.DataFrame, column: str = "reconciled") -> pl.DataFrame:
    """One row per store x SKU of a reconciled forecast: origin, first period, the model version and the
    vector, in step order."""
    if "shadow" in reconciled.columns and reconciled["shadow"].any():
        version = reconciled["model_version"][0] if "model_version" in reconciled.columns else "?"
        raise ShadowForecast(f"the forecasts of v{version} are in shadow (not promoted): they are never published")
    bottom = reconciled.filter(pl.col("level") == "sku").with_columns(parts=pl.col("node").str.split("/"))
    if "model_version" not in bottom.columns:
        bottom = bottom.with_columns(model_version=pl.lit(None, pl.String))
    return (
        bottom.with_columns(store_id=pl.col("parts").list.get(-2), sku_id=pl.col("parts").list.get(-1))
        .sort("store_id", "sku_id", "ds")
        .group_by("store_id", "sku_id", maintain_order=True)
        .agg(
            pl.col("origin").first(),
            pl.col("ds").first().alias("first_day"),
            pl.col("model_version").first(),
            pl.col(column).round(3).alias("forecast"),
        )
    )


def publish(client, table: pl.DataFrame, run_id: str) -> dict:
    """Write the run's hash, switch the pointer atomically, delete the previous run's hash. `table` comes from
    `vectors`: shadow forecasts never reach it."""
    if "model_version" not in table.columns:
        table = table.with_columns(model_version=pl.lit(None, pl.String))
    key = RUN_PREFIX + run_id
    origin = str(table["origin"].max())
    client.delete(key)
    written = 0
    for chunk in table.iter_slices(BATCH):
        mapping = {
            field(s, k): json.dumps(
                {
                    "store_id": s,
                    "sku_id": k,
                    "origin": str(o),
                    "first_day": str(d),
                    "run_id": run_id,
                    "model_version": v,
                    "forecast": list(f),
                }
            )
            for s, k, o, d, v, f in chunk.select(
                "store_id", "sku_id", "origin", "first_day", "model_version", "forecast"
            ).iter_rows()
        }
        client.hset(key, mapping=mapping)
        written += len(mapping)
    previous = client.get(POINTER)
    with client.pipeline(transaction=True) as tx:
        tx.set(POINTER, run_id)
        tx.set(ORIGIN, origin)
        tx.execute()
    if previous is not None and previous.decode() != run_id:
        client.unlink(RUN_PREFIX + previous.decode())
    return {
        "run_id": run_id,
        "written": written,
        "origin": origin,
        "previous_run": previous.decode() if previous else None,
    }


def current(client) -> dict:
    run, origin = client.mget(POINTER, ORIGIN)
    run_id = run.decode() if run else None
    return {
        "run_id": run_id,
        "origin": origin.decode() if origin else None,
        "series": client.hlen(RUN_PREFIX + run_id) if run_id else 0,
    }
