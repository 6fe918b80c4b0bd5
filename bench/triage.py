"""Ticket triage: SetFit training time, batch inference throughput, endpoint latency, quality.

    .venv/bin/python -m bench.triage [--runs 3] [--tickets-per-month 1500] [--train-runs 1]

Setup (not timed): the synthetic helpdesk at `--tickets-per-month` for four months, scrubbed
as the `tickets_clean` asset does; the training set is the 3,000 most recent labelled tickets
of the first three months (outside the frozen hold-out), the fourth month is the held-out
month.

Timed:
  (a) training: `train_setfit` with the configured CPU budget (TriageSettings.budget) on the
      3,000 tickets: contrastive steps on the body + the logistic head (embeds every ticket).
  (b) batch inference on the held-out month, same process, same model, alternating:
      the peer = plain `SetFitModel.predict_proba(texts)` (SetFit's own batching, the trained
      128-token length), and ours = `TriageClassifier` as served (length-sorted batches of 64
      under torch.inference_mode, tickets truncated to TriageSettings.max_tokens, int8 dynamic
      quantization of the body's Linear layers), plus ours without quantization.
  (c) endpoint: the real server (`python -m lakehouse.serving`, uvicorn) with the model
      registered as champion in a fresh MLflow store; one raw ticket per POST /triage/tickets,
      sequential, after a warm-up; client-side latency P50/P99.
  (d) quality on the held-out month at the 0.85 threshold, for the plain and the fast model.
Every figure is the median over `--runs` repetitions (training: over `--train-runs`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.common import PYTHON, ROOT, header, markdown_table, median, publish  # noqa: E402

NAME = "triage"
GOALS = {"train_s": 600.0, "throughput_per_s": 400.0, "endpoint_p99_ms": 30.0, "auto_rate": 0.78, "auto_precision": 0.94}
MONTHS = [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)]


def prepare(tickets_per_month: int):
    import polars as pl

    from lakehouse.triage.config import SETTINGS, WorldConfig
    from lakehouse.triage.data import build_training_set, extract_month, scrub_tickets

    world = WorldConfig(tickets_per_month=tickets_per_month)
    clean, labels, raw_last = [], [], None
    for m in MONTHS:
        raw, customers, lab = extract_month(m.isoformat(), world=world)
        clean.append(scrub_tickets(raw, customers, m.isoformat()))
        labels.append(lab)
        raw_last = raw
    clean_all, labels_all = pl.concat(clean), pl.concat(labels)
    training = build_training_set(clean_all, labels_all, datetime(2026, 4, 1), SETTINGS)
    held_out = clean[-1].join(labels[-1].select("ticket_id", "category"), on="ticket_id")
    return training, held_out, raw_last


def quality(classifier_predict, held_out) -> dict:
    from lakehouse.triage.config import SETTINGS
    from lakehouse.triage.model import evaluate

    categories, confidence = classifier_predict(held_out["text"].to_list())
    return evaluate(held_out["category"].to_list(), categories, confidence, SETTINGS.confidence_threshold)


def endpoint_latency(model_dir_home: Path, raw, requests: int, runs: int) -> list[dict]:
    import httpx

    from lakehouse.common.local_servers import free_port

    port = free_port()
    env = {
        **os.environ,
        "LAKEHOUSE_HOME": str(model_dir_home),
        "LAKEHOUSE_API_KEY": "bench",
        "LAKEHOUSE_SERVING_CASES": "triage",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen([PYTHON, "-m", "lakehouse.serving", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=30.0) as client:
            deadline = time.time() + 180
            while True:
                try:
                    if client.get(f"{url}/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the serving app did not become ready")
                time.sleep(0.5)
            payloads = [{"subject": r["subject"], "body": r["body"] or ""} for r in raw.head(requests + 50).iter_rows(named=True)]
            headers = {"X-API-Key": "bench"}
            for p in payloads[:50]:  # warm-up
                client.post(f"{url}/triage/tickets", json=p, headers=headers).raise_for_status()
            results = []
            for _ in range(runs):
                latencies = []
                for p in payloads[50:]:
                    started = time.perf_counter()
                    client.post(f"{url}/triage/tickets", json=p, headers=headers).raise_for_status()
                    latencies.append(1000 * (time.perf_counter() - started))
                latencies.sort()
                results.append({"p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(0.99 * (len(latencies) - 1))], "requests": len(latencies)})
            return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--train-runs", type=int, default=1)
    parser.add_argument("--tickets-per-month", type=int, default=1500)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    import numpy as np

    from lakehouse.common.registry import CHAMPION, Registry
    from lakehouse.common.home import LakehouseHome
    from lakehouse.triage.config import SETTINGS
    from lakehouse.triage.model import TriageClassifier, Trained, log_model, train_setfit

    payload = header(NAME, args.runs)
    training, held_out, raw = prepare(args.tickets_per_month)
    texts = held_out["text"].to_list()
    print(f"training set {training.height} tickets, held-out month {held_out.height} tickets")

    train_seconds, model = [], None
    for i in range(args.train_runs):
        started = time.perf_counter()
        model = train_setfit(training["text"].to_list(), training["category"].to_list(), SETTINGS.budget, seed=i)
        train_seconds.append(time.perf_counter() - started)
        print(f"training run {i + 1}: {train_seconds[-1]:.1f} s")

    work = Path(tempfile.mkdtemp(prefix="bench-triage-"))
    try:
        saved = work / "setfit"
        model.save_pretrained(str(saved))
        from setfit import SetFitModel

        plain = SetFitModel.from_pretrained(str(saved))
        fast = TriageClassifier.load(saved, quantize=True, batch_size=SETTINGS.batch_size, max_length=SETTINGS.max_tokens)
        fast_float = TriageClassifier.load(saved, quantize=False, batch_size=SETTINGS.batch_size, max_length=SETTINGS.max_tokens)

        def plain_predict(batch):
            proba = np.asarray(plain.predict_proba(batch, as_numpy=True))
            return [plain.labels[i] for i in proba.argmax(axis=1)], proba.max(axis=1)

        def fast_predict(classifier):
            def predict(batch):
                out = classifier.predict(batch)
                return out["category"].to_list(), out["confidence"].to_numpy()

            return predict

        timings = {"plain_setfit": [], "ours_int8": [], "ours_float": []}
        predictors = {"plain_setfit": plain_predict, "ours_int8": fast_predict(fast), "ours_float": fast_predict(fast_float)}
        for run in range(args.runs):
            for name, predict in predictors.items():
                started = time.perf_counter()
                predict(texts)
                timings[name].append(len(texts) / (time.perf_counter() - started))
            print(f"throughput run {run + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in timings.items()))
        qualities = {name: quality(predict, held_out) for name, predict in predictors.items()}
        agreement = float(np.mean(np.array(plain_predict(texts)[0]) == np.array(fast_predict(fast)(texts)[0])))

        # The endpoint serves this model as champion from a fresh MLflow store.
        home = LakehouseHome(work / "home")
        registry = Registry(home.mlflow_uri, home.mlflow_artifacts)
        trained = Trained(fast_float, qualities["ours_float"], qualities["ours_float"], median(train_seconds), training.height, fast_float.categories)
        version, _ = log_model(registry, trained, {}, texts[:2], SETTINGS, run_name="bench")
        registry.set_alias(SETTINGS.registered_model_name, CHAMPION, version)
        endpoint = endpoint_latency(home.root, raw, args.requests, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    throughput = {k: median(v) for k, v in timings.items()}
    payload.update(
        {
            "goals": GOALS,
            "setup": {
                "tickets_per_month": args.tickets_per_month,
                "training_tickets": training.height,
                "held_out_tickets": held_out.height,
                "budget": vars(SETTINGS.budget),
                "inference_batch_size": SETTINGS.batch_size,
                "inference_max_tokens": SETTINGS.max_tokens,
                "torch_threads": __import__("torch").get_num_threads(),
            },
            "train_seconds": {"runs": train_seconds, "median": median(train_seconds)},
            "throughput_per_s": {"runs": timings, "median": throughput, "speedup_vs_plain": throughput["ours_int8"] / throughput["plain_setfit"]},
            "quality_held_out_month": qualities,
            "int8_vs_plain_agreement": agreement,
            "endpoint": {"runs": endpoint, "p50_ms": median([r["p50_ms"] for r in endpoint]), "p99_ms": median([r["p99_ms"] for r in endpoint])},
        }
    )
    return publish(NAME, payload, render)


def render(p: dict) -> str:
    q = p["quality_held_out_month"]
    rows = [
        ["training on 3,000 tickets (s)", p["train_seconds"]["median"], f"<= {p['goals']['train_s']:.0f}"],
        ["batch throughput, plain SetFit predict (tickets/s)", p["throughput_per_s"]["median"]["plain_setfit"], "peer"],
        ["batch throughput, ours float (tickets/s)", p["throughput_per_s"]["median"]["ours_float"], "-"],
        ["batch throughput, ours int8 (tickets/s)", p["throughput_per_s"]["median"]["ours_int8"], f">= {p['goals']['throughput_per_s']:.0f}"],
        ["speed-up vs plain SetFit", p["throughput_per_s"]["speedup_vs_plain"], "-"],
        ["endpoint P50 (ms)", p["endpoint"]["p50_ms"], "-"],
        ["endpoint P99 (ms)", p["endpoint"]["p99_ms"], f"<= {p['goals']['endpoint_p99_ms']:.0f}"],
        ["auto-triage rate, int8 / plain", f"{q['ours_int8']['auto_rate']:.1%} / {q['plain_setfit']['auto_rate']:.1%}", ">= 78%"],
        ["auto precision, int8 / plain", f"{q['ours_int8']['auto_precision']:.1%} / {q['plain_setfit']['auto_precision']:.1%}", ">= 94%"],
        ["macro-F1, int8 / plain", f"{q['ours_int8']['macro_f1']:.3f} / {q['plain_setfit']['macro_f1']:.3f}", "-"],
        ["int8 vs plain: same category", f"{p['int8_vs_plain_agreement']:.1%}", "-"],
    ]
    return markdown_table(["measure (median)", "value", "goal"], rows)


if __name__ == "__main__":
    sys.exit(main())
