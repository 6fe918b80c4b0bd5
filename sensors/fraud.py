"""Jobs, schedules and sensors of the fraud case."""

JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
