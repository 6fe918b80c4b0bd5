"""Run the online endpoints: `python -m lakehouse.serving [--host H] [--port P]`.

Configuration comes from the environment (README, Configuration): LAKEHOUSE_API_KEY
(required), LAKEHOUSE_HOME, LAKEHOUSE_REDIS_URL, MLFLOW_TRACKING_URI and
LAKEHOUSE_SERVING_CASES (default: every case).
"""

import argparse
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def serve(host: str, port: int) -> None:
    """Serve the app configured by the environment until interrupted (uvloop, httptools)."""
    import uvicorn

    from lakehouse.serving.app import ServingSettings, create_app

    app = create_app(ServingSettings.from_env())
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
