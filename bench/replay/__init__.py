"""Months in production, replayed (issue 24).

    python -m bench.replay --case fraud            # make replay CASE=fraud
    python -m bench.replay --case fraud --days 5   # a short slice (results not written)

A fresh home's Dagster instance is driven through simulated time: the case's real schedules and sensors are
evaluated at each simulated instant, their runs executed by a real dagster-daemon (run queue, pools, run monitoring,
run retries), while the case's files grow with the clock and faults are injected at fixed times. The timeline
(every run, every alert and the fault it matches, the champion history, freshness per SLA, pool slots, wall time)
is written to bench/results/replay_<case>.json and printed; the home is kept, so `make ui` on it shows the replay.
See docs/replay.md.
"""
