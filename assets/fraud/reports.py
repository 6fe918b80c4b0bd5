"""How a fraud evaluation reads in the Dagster UI (rates in %, money with its currency, the table and a chart)."""

import dagster as dg

from assets.common import table
from lakehouse.common.display import bar_chart, pct
from lakehouse.fraud.model import Evaluation
from lakehouse.fraud.pipeline import evaluation_table
from lakehouse.fraud.settings import FraudSettings


def evaluation_metadata(evaluation: Evaluation, settings: FraudSettings) -> dict:
    m, b = evaluation.cascade, evaluation.baseline
    currency = settings.economics.currency
    out = {
        "transactions": int(m["transactions"]),
        "frauds": int(m["frauds"]),
        "roc_auc": round(m["roc_auc"], 5),
        "average_precision": round(m["average_precision"], 5),
        **{
            f"{k}_pct": round(m[k] * 100, 2)
            for k in (
                "recall",
                "precision",
                "flag_rate",
                "layer1_block_share",
                "layer1_precision",
                "layer3_share",
                "layer3_fraud_share",
            )
        },
        **{f"baseline_{k}_pct": round(b[k] * 100, 2) for k in ("recall", "precision")},
        "layer3_lift_average_precision": round(m["layer3_lift_average_precision"], 5),
        "layer3_lift_recall_pct": round(m["layer3_lift_recall"] * 100, 2),
        "layer3_lift_precision_pct": round(m["layer3_lift_precision"] * 100, 2),
        f"fraud_caught_per_month_{currency}": round(m["fraud_caught_per_month"]),
        f"net_gain_per_month_{currency}": round(m["net_gain_per_month"]),
        "economics": settings.economics_note(),
        "reading": (
            f"The cascade flags {pct(m['recall'])} of the frauds at {pct(m['precision'])} precision, against "
            f"{pct(b['recall'])} at {pct(b['precision'])} for the rules alone; layer 3 re-scored {pct(m['layer3_share'])} of the payments."
        ),
        "chart": dg.MetadataValue.md(
            bar_chart(
                "recall and precision, rules only vs cascade",
                [
                    ("recall rules", b["recall"]),
                    ("recall cascade", m["recall"]),
                    ("prec. rules", b["precision"]),
                    ("prec. cascade", m["precision"]),
                ],
                label=pct,
            )
        ),
        "metrics": table(evaluation_table(evaluation, settings)),
    }
    if not evaluation.by_pattern.is_empty():
        out["recall_by_pattern"] = table(evaluation.by_pattern)
    return out
