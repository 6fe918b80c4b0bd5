"""Ticket triage: training time, batch inference throughput, endpoint latency, quality, batch independence.

    .venv/bin/python -m bench.triage [--runs 3] [--tickets-per-month 1500] [--train-runs 1]

Setup (not timed): the synthetic helpdesk at `--tickets-per-month` for four months, scrubbed as the
`tickets_clean` asset does; the training set is built by the pipeline from the first three months
(every validated ticket outside the frozen hold-out, the newest 20 % for validation), the fourth
month is the held-out month.

Timed:
  (a) training: `lakehouse.triage.model.train` with the default settings: fine-tuning of body and
      head within the step budget, ONNX export, calibration and out-of-scope rule on validation.
  (b) batch inference on the held-out month, same process, alternating: the served classifier
      (ONNX Runtime, static int8 unless `inference.quantize` is off, tickets truncated to
      `inference.max_tokens`, length-sorted batches)
      against the peer, the same body in PyTorch through sentence-transformers' `encode` (float32,
      same truncation, its own length sorting, batches of the same size).
  (c) endpoint: the real server (`python -m lakehouse.serving`, uvicorn) with the model registered
      as champion in a fresh MLflow store; one raw ticket per POST /triage/tickets, sequential,
      after a warm-up; client-side latency P50/P99.
  (d) quality on the held-out month at the classifier's fitted auto-route threshold, as served; and the largest
      difference between a ticket scored in the whole batch, alone, and in a shuffled batch.
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
GOALS = {
    "train_s": 600.0,
    "throughput_per_s": 400.0,
    "endpoint_p99_ms": 30.0,
    "auto_rate": 0.78,
    "auto_precision": 0.94,
}
MONTHS = [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)]


def prepare(tickets_per_month: int):
    import polars as pl

    from lakehouse.common.settings import configured_sources_path
    from lakehouse.triage.pii import KnownPeople
    from lakehouse.triage.pipeline import build_training_set, scrub_tickets
    from lakehouse.triage.settings import TriageSettings
    from lakehouse.triage.world import WorldConfig, generate_customers, generate_month

    world = WorldConfig(tickets_per_month=tickets_per_month)
    customers = generate_customers(world)
    people = KnownPeople.from_records(customers.to_dicts())
    clean, labels, raw_last = [], [], None
    for m in MONTHS:
        raw, lab = generate_month(world, m, customers)
        clean.append(scrub_tickets(raw, people, m.isoformat()[:7], "GB"))
        labels.append(lab)
        raw_last = raw
    training = build_training_set(
        pl.concat(clean[:-1]),
        pl.concat(labels[:-1]),
        datetime(2026, 4, 1),
        TriageSettings.load(configured_sources_path()),
    )
    held_out = clean[-1].join(labels[-1].select("ticket_id", "category"), on="ticket_id")
    return training, held_out, raw_last


def endpoint_latency(home: Path, raw, requests: int, runs: int) -> list[dict]:
    import httpx

    from lakehouse.common.local_servers import free_port

    port = free_port()
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "LAKEHOUSE_API_KEY": "bench", "LAKEHOUSE_SERVING_CASES": "triage"}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen(
        [PYTHON, "-m", "lakehouse.serving", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
            payloads = [
                {"subject": r["subject"], "body": r["body"] or ""}
                for r in raw.head(requests + 50).iter_rows(named=True)
            ]
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
                results.append(
                    {
                        "p50_ms": latencies[len(latencies) // 2],
                        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
                        "requests": len(latencies),
                    }
                )
            return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def batch_independence(classifier, texts: list[str]) -> dict:
    """Largest confidence difference and category disagreements: whole batch vs one at a time vs shuffled."""
    import numpy as np
    import polars as pl

    batched = classifier.predict(texts)
    alone = pl.concat([classifier.predict([t]) for t in texts])
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled = classifier.predict([texts[i] for i in order])[np.argsort(order).tolist()]
    return {
        name: {
            "category_disagreements": int((other["category"] != batched["category"]).sum()),
            "max_confidence_difference": float((other["confidence"] - batched["confidence"]).abs().max()),
        }
        for name, other in (("one_at_a_time", alone), ("shuffled", shuffled))
    }


def throughput_runs(classifier, texts: list[str], settings, runs: int) -> dict[str, list[float]]:
    """Tickets per second of the served classifier and of the same body in PyTorch, alternating, `runs` times."""
    import torch
    from sentence_transformers import SentenceTransformer

    from lakehouse.triage.model import body_path, threads

    torch.set_num_threads(threads())
    peer = SentenceTransformer(str(body_path()), device="cpu")
    peer.max_seq_length = settings.inference.max_tokens

    def peer_predict(batch):
        embeddings = peer.encode(
            batch, batch_size=settings.inference.batch_size, convert_to_numpy=True, normalize_embeddings=True
        )
        return classifier.decide(classifier.probabilities(classifier.logits(embeddings)))

    timings = {"peer_torch": [], "ours_onnx": []}
    predictors = {"peer_torch": peer_predict, "ours_onnx": classifier.predict}
    for run in range(runs):
        for name, predict in predictors.items():
            started = time.perf_counter()
            predict(texts)
            timings[name].append(len(texts) / (time.perf_counter() - started))
        print(f"throughput run {run + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in timings.items()))
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--train-runs", type=int, default=1)
    parser.add_argument("--tickets-per-month", type=int, default=1500)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    import polars as pl

    from lakehouse.common import promotion
    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.registry import Registry
    from lakehouse.common.settings import configured_sources_path
    from lakehouse.triage.lifecycle import gate
    from lakehouse.triage.model import route, score, threads, train
    from lakehouse.triage.registered import log_model
    from lakehouse.triage.settings import TriageSettings

    settings = TriageSettings.load(configured_sources_path())
    payload = header(NAME, args.runs)
    training, held_out, raw = prepare(args.tickets_per_month)
    train_rows, validation = (
        training.filter(pl.col("split") == "train"),
        training.filter(pl.col("split") == "validation"),
    )
    texts = held_out["text"].to_list()
    print(
        f"training set {train_rows.height} + {validation.height} validation tickets, "
        f"held-out month {held_out.height} tickets"
    )

    work = Path(tempfile.mkdtemp(prefix="bench-triage-"))
    try:
        train_seconds, trained = [], None
        for i in range(args.train_runs):
            trained = train(
                train_rows, validation, settings.with_(training={"seed": i}), directory=work / f"classifier-{i}"
            )
            train_seconds.append(trained.train_seconds)
            print(f"training run {i + 1}: {train_seconds[-1]:.1f} s ({trained.steps} steps)")
        classifier = trained.classifier

        timings = throughput_runs(classifier, texts, settings, args.runs)
        quality = score(classifier, held_out, settings)
        independence = batch_independence(classifier, texts)
        routed = route(classifier.predict(texts), classifier.auto_threshold)

        # The endpoint serves this model as champion from a fresh MLflow store.
        home = LakehouseHome(work / "home")
        registry = Registry(home.mlflow_uri, home.mlflow_artifacts)
        version, _ = log_model(registry, NAME, trained, {}, quality, texts[:2], settings, run_name="bench")
        promotion.record(registry, gate(quality, None, version, None, settings))
        if not promotion.promote(registry, settings.registered_model_name, version).moved:
            raise SystemExit(f"the benchmark's model did not pass its gate on the held-out month: {quality}")
        endpoint = endpoint_latency(home.root, raw, args.requests, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    throughput = {k: median(v) for k, v in timings.items()}
    payload.update(
        {
            "goals": GOALS,
            "setup": {
                "tickets_per_month": args.tickets_per_month,
                "training_tickets": train_rows.height,
                "validation_tickets": validation.height,
                "held_out_tickets": held_out.height,
                "training": settings.training.model_dump(mode="json"),
                "inference": settings.inference.model_dump(mode="json"),
                "threads": threads(),
            },
            "train_seconds": {"runs": train_seconds, "median": median(train_seconds)},
            "throughput_per_s": {
                "runs": timings,
                "median": throughput,
                "speedup_vs_peer": throughput["ours_onnx"] / throughput["peer_torch"],
            },
            "quality_held_out_month": quality,
            "auto_threshold": classifier.auto_threshold,
            "reasons": dict(routed.group_by("reason").len().iter_rows()),
            "batch_independence": independence,
            "endpoint": {
                "runs": endpoint,
                "p50_ms": median([r["p50_ms"] for r in endpoint]),
                "p99_ms": median([r["p99_ms"] for r in endpoint]),
            },
        }
    )
    return publish(NAME, payload, render)


def render(p: dict) -> str:
    q, b = p["quality_held_out_month"], p["batch_independence"]
    rows = [
        [
            f"training on {p['setup']['training_tickets']:,} tickets (s)",
            p["train_seconds"]["median"],
            f"<= {p['goals']['train_s']:.0f}",
        ],
        ["batch throughput, same body in PyTorch (tickets/s)", p["throughput_per_s"]["median"]["peer_torch"], "peer"],
        [
            f"batch throughput, served ONNX {'static int8' if p['setup']['inference']['quantize'] else 'float32'} "
            "(tickets/s)",
            p["throughput_per_s"]["median"]["ours_onnx"],
            f">= {p['goals']['throughput_per_s']:.0f}",
        ],
        ["speed-up vs the peer", p["throughput_per_s"]["speedup_vs_peer"], "-"],
        ["endpoint P50 (ms)", p["endpoint"]["p50_ms"], "-"],
        ["endpoint P99 (ms)", p["endpoint"]["p99_ms"], f"<= {p['goals']['endpoint_p99_ms']:.0f}"],
        [f"auto-triage rate at > {p['auto_threshold']:.3f} (fitted)", f"{q['auto_rate']:.1%}", ">= 78%"],
        ["precision of auto-routed tickets", f"{q['auto_precision']:.1%}", ">= 94%"],
        ["accuracy / macro-F1", f"{q['accuracy']:.3f} / {q['macro_f1']:.3f}", "-"],
        [
            "batch vs alone vs shuffled: categories changed, max confidence difference",
            f"{b['one_at_a_time']['category_disagreements'] + b['shuffled']['category_disagreements']}, "
            f"{max(b['one_at_a_time']['max_confidence_difference'], b['shuffled']['max_confidence_difference']):.1e}",
            "0, <= 1e-4",
        ],
    ]
    return markdown_table(["measure (median)", "value", "goal"], rows)


if __name__ == "__main__":
    sys.exit(main())
