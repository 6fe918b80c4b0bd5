"""Triage demo: six months of helpdesk history, a first SetFit champion, four months routed live,
a quarterly retraining through the gate, the ROI report."""

from datetime import date
from pathlib import Path

import dagster as dg

from demos import latest_metadata, range_tags

GO_LIVE = date(2026, 7, 1)  # the months before are the labelled history the first model learns from
RETRAINING = date(2026, 10, 1)  # the quarterly schedule's run in the demo window
DEMO_STEPS = 10  # SetFit contrastive steps (the CPU budget of the demo's trainings)


def run(instance: dg.DagsterInstance, resources: dict, log=print, max_steps: int = DEMO_STEPS) -> dict:
    """The triage graph, in the order the schedules would run it over time."""
    from assets.triage import ASSETS, CHECKS
    from assets.triage.partitions import monthly
    from lakehouse.triage.config import WorldConfig
    from sensors.triage import retraining_run_config

    world = WorldConfig.from_env()
    months = [m.isoformat() for m in world.month_starts]
    keys = [k for k in monthly.get_partition_keys() if k in months]
    live = [k for k in keys if date.fromisoformat(k) >= GO_LIVE]

    def materialize(selection, **kwargs):
        return dg.materialize([*ASSETS, *CHECKS], selection=selection, instance=instance, resources=resources, raise_on_error=False, **kwargs)

    model_config = {"triage__triage_model": {"config": {"max_steps": max_steps}}}
    log(f"triage 1/5 {len(keys)} months of tickets ({world.tickets_per_month}/month), scrubbed, one run")
    materialize("key:triage/tickets_clean or key:triage/agent_labels", tags=range_tags(keys[0], keys[-1]))
    log(f"triage 2/5 frozen hold-out, training set before {GO_LIVE}, SetFit ({max_steps} steps), gate, champion")
    first = materialize(
        "key:triage/frozen_holdout or key:triage/training_set or key:triage/triage_model or key:triage/champion_model",
        run_config={"ops": {**retraining_run_config(GO_LIVE)["ops"], "triage__frozen_holdout": {"config": {"as_of": GO_LIVE.isoformat()}}, **model_config}},
    )
    log(f"triage 3/5 monthly routing, queues and confusion matrix for {', '.join(k[:7] for k in live)}")
    for key in live:
        if date.fromisoformat(key) == RETRAINING:
            log(f"triage 4/5 quarterly retraining on {RETRAINING}: challenger vs champion on the frozen hold-out")
            retrain = materialize(
                "key:triage/frozen_holdout or key:triage/training_set or key:triage/triage_model or key:triage/champion_model",
                run_config={"ops": {**retraining_run_config(RETRAINING)["ops"], **model_config}},
            )
        materialize("key:triage/ticket_routes or key:triage/published_routes or key:triage/monthly_confusion", partition_key=key)
    log("triage 5/5 ROI report")
    materialize("key:triage/roi_report")
    return {"first_training_success": first.success, "retraining_success": retrain.success, "live_months": live, "months": keys}


def report(instance: dg.DagsterInstance, home: Path, outcome: dict) -> bool:
    """Print the triage results beside the seed's; True when a champion routes tickets and the ROI report exists."""
    from lakehouse.triage.config import SETTINGS, WorldConfig

    world = WorldConfig.from_env()
    print(f"\n=== Triage (seed case 4): {world.tickets_per_month:,} tickets/month, {len(world.categories)} categories, seed {world.seed} ===")
    tickets = latest_metadata(instance, ["triage", "tickets_clean"])
    if tickets:
        print(f"tickets: {tickets['dagster/row_count']:,} scrubbed, {tickets['pii_replaced']:,} PII items replaced")
    model = latest_metadata(instance, ["triage", "triage_model"])
    champion = latest_metadata(instance, ["triage", "champion_model"])
    if model:
        previous = model["champion_holdout_macro_f1"]
        print(
            f"latest model v{model['model_version']} ({model['training_rows']} training tickets, {model['max_steps']} steps, {model['train_seconds']:.0f} s): "
            f"macro-F1 {model['macro_f1']:.3f}, auto {model['auto_rate']:.1%} at precision {model['auto_precision']:.1%}; "
            f"frozen hold-out macro-F1 {model['holdout_macro_f1']:.3f} vs champion {previous if isinstance(previous, str) else f'{previous:.3f}'}"
        )
    print(f"champion: v{champion.get('champion_version', '?')}  (retraining {'promoted' if outcome['retraining_success'] else 'refused, champion kept'})")
    roi = latest_metadata(instance, ["triage", "roi_report"])
    if roi:
        print(
            f"routed {roi['months']}: auto-triage {roi['auto_triage_rate']:.1%} (seed 78%) at precision {roi['auto_precision']:.1%} (seed 94%), "
            f"threshold {SETTINGS.confidence_threshold}; FTE freed {roi['fte_freed']:.2f} (seed 2.2); ROI {roi['roi_multiple']:.1f}x (seed 8x)"
        )
    return bool(outcome["first_training_success"] and champion and roi)
