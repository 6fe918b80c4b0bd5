"""Only for `lakehouse/serving/__main__.py`, until it stops importing cases: the fraud case's
switches are its settings (`lakehouse/fraud/settings.py`)."""

from lakehouse.fraud.settings import FraudSettings


def fraud_serving_env() -> dict[str, str]:
    settings = FraudSettings()
    return {"consumers": settings.consumers, "kafka_bootstrap": settings.kafka_bootstrap}
