"""The one online HTTP app: a router per case (fraud decisions, forecast lookup, ticket
triage) behind one API key, with health, readiness and OpenAPI."""
