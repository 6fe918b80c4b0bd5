"""Performance of published scores once their labels have matured."""

from __future__ import annotations

import polars as pl


def monthly_performance(scored: pl.DataFrame) -> pl.DataFrame:
    """AUC-PR per calendar month of snapshot and model version (shadow or not), over scores whose 30-day
    label has matured."""
    from sklearn.metrics import average_precision_score

    matured = scored.filter(pl.col("matured_30d")).with_columns(month=pl.col("snapshot_date").dt.truncate("1mo"))
    rows = []
    for (month, version, shadow), part in matured.group_by("month", "model_version", "shadow", maintain_order=True):
        y = part["churned_30d"].cast(pl.Int64).to_numpy()
        if 0 < y.sum() < y.size:
            rows.append(
                {
                    "month": month,
                    "model_version": version,
                    "shadow": shadow,
                    "rows": part.height,
                    "churners": int(y.sum()),
                    "auc_pr": float(average_precision_score(y, part["score"].to_numpy())),
                }
            )
    schema = {
        "month": pl.Date,
        "model_version": pl.String,
        "shadow": pl.Boolean,
        "rows": pl.Int64,
        "churners": pl.Int64,
        "auc_pr": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).sort("month", "model_version")
