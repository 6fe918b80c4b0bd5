"""Jobs, schedules and sensors of the triage case."""

JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
