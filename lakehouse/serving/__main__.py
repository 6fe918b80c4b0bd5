"""Run the online endpoints: `python -m lakehouse.serving [--host H] [--port P]`.

Configuration comes from the environment (README, Configuration): LAKEHOUSE_API_KEY
(required), LAKEHOUSE_HOME, LAKEHOUSE_REDIS_URL, MLFLOW_TRACKING_URI,
LAKEHOUSE_SERVING_CASES (default: every registered case), LAKEHOUSE_SERVING_WORKERS (default
1: more worker processes share the port; the app keeps no state between requests) and
LAKEHOUSE_SERVING_MAX_BODY_BYTES (default 64 KB).
"""

import argparse
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def serve(host: str, port: int, workers: int | None = None) -> None:
    """Serve the app configured by the environment until interrupted (uvloop, httptools)."""
    import uvicorn

    from lakehouse.serving.app import ServingSettings, case_modules

    settings = ServingSettings.from_env()  # a missing key or an unknown case stops here, not in every worker
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    for module in case_modules(settings):
        if hasattr(module, "preflight"):
            module.preflight(settings)
    workers = settings.workers
    uvicorn.run(
        "lakehouse.serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=None, help="default: LAKEHOUSE_SERVING_WORKERS, else 1")
    args = parser.parse_args()
    serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
