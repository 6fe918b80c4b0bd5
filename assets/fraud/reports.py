"""How a fraud evaluation reads in the run log and the Dagster UI (rates in %, money with its currency, the
table and a chart)."""

import dagster as dg

from assets.common import number, table
from lakehouse.common.display import bar_chart, pct
from lakehouse.fraud.model import Evaluation
from lakehouse.fraud.pipeline import evaluation_table
from lakehouse.fraud.settings import FraudSettings


def evaluation_line(evaluation: Evaluation) -> str:
    """The evaluation figures in one line of the run log."""
    m, b = evaluation.cascade, evaluation.baseline
    return (
        f"{m['transactions']:,.0f} payments, {m['frauds']:,.0f} frauds: ROC AUC {m['roc_auc']:.5f}, average "
        f"precision {m['average_precision']:.4f} (layer 2 alone {m['layer2_only_average_precision']:.4f}"
        + (f", layer 3 alone {m['layer3_only_average_precision']:.4f}" if "layer3_only_average_precision" in m else "")
        + f"); at the thresholds recall {pct(m['recall'])}, precision {pct(m['precision'])} (rules only "
        f"{pct(b['recall'])} / {pct(b['precision'])}); card precision @ k per day {m['card_precision_at_k']:.3f}; "
        f"layer 3 re-scored {pct(m['layer3_share'])}, {m['frauds_below_band']:,.0f} frauds below its band"
    )


def evaluation_metadata(evaluation: Evaluation, settings: FraudSettings) -> dict:
    m, b = evaluation.cascade, evaluation.baseline
    currency = settings.economics.currency
    out = {
        "transactions": int(m["transactions"]),
        "frauds": int(m["frauds"]),
        "roc_auc": round(m["roc_auc"], 5),
        "average_precision": round(m["average_precision"], 5),
        "layer2_only_average_precision": number(m["layer2_only_average_precision"], 5),
        **(
            {"layer3_only_average_precision": number(m["layer3_only_average_precision"], 5)}
            if "layer3_only_average_precision" in m
            else {}
        ),
        f"card_precision_at_{settings.evaluation.card_precision_k}": number(m["card_precision_at_k"], 4),
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
        "frauds_below_band": int(m["frauds_below_band"]),
        "layer3_lift_average_precision": round(m["layer3_lift_average_precision"], 5),
        "layer3_lift_recall_pct": round(m["layer3_lift_recall"] * 100, 2),
        "layer3_lift_precision_pct": round(m["layer3_lift_precision"] * 100, 2),
        f"fraud_caught_per_month_{currency}": round(m["fraud_caught_per_month"]),
        f"net_gain_per_month_{currency}": round(m["net_gain_per_month"]),
        "economics": settings.economics_note(),
        "reading": (
            f"The cascade flags {pct(m['recall'])} of the frauds at {pct(m['precision'])} precision, against "
            f"{pct(b['recall'])} at {pct(b['precision'])} for the rules alone; layer 3 re-scored "
            f"{pct(m['layer3_share'])} of the payments."
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
