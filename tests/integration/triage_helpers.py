"""What the triage lifecycle tests share: a tick of the alert sensor over the triage code location, and one
request to the triage endpoint of a home's serving app."""

import dagster as dg


def tick_alerts(instance: dg.DagsterInstance, resources: dict) -> None:
    """One tick of sensors/alerts.py's sensor over the triage assets and checks, as the daemon would run it."""
    from assets.triage import ASSETS, CHECKS
    from sensors.alerts import asset_check_alerts

    definitions = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, sensors=[asset_check_alerts], resources=resources)
    asset_check_alerts(dg.build_sensor_context(instance=instance, resources=resources, definitions=definitions))


def ask_endpoint(paths, ticket: dict | None = None) -> tuple[int, dict]:
    """POST /triage/tickets on the serving app of the home at `paths` (a LakehouseHome): status and answer."""
    from fastapi.testclient import TestClient

    from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app

    # MLflow's fluent API leaves the last store it logged to in MLFLOW_TRACKING_URI: name this home's store.
    settings = ServingSettings(api_key="k", home=paths, mlflow_uri=paths.mlflow_uri, cases=("triage",))
    ticket = ticket or {"subject": "Charged twice", "body": "Two payments of 49.99 EUR were taken from my card."}
    with TestClient(create_app(settings)) as client:
        response = client.post("/triage/tickets", json=ticket, headers={API_KEY_HEADER: "k"})
    return response.status_code, response.json()
