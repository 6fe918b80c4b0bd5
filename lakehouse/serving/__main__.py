"""Run the online endpoints: `python -m lakehouse.serving [--host H] [--port P]`.

Configuration comes from the environment (README, Configuration): LAKEHOUSE_API_KEY
(required), LAKEHOUSE_HOME, LAKEHOUSE_REDIS_URL, MLFLOW_TRACKING_URI and
LAKEHOUSE_SERVING_CASES (default: every case).
"""

import argparse
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import uvicorn

    from lakehouse.serving.app import ServingSettings, create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app = create_app(ServingSettings.from_env())
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
