"""Jobs, schedules and sensors of the forecast case."""

JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
