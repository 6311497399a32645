"""Camera placement planner: where the next cameras go, from crime, blind spots and complaints.

A batch job, separate from the streaming services: the core (layers -> coverage -> optimisation ->
outputs) knows nothing of Kafka; `cctv plan --config plan.yaml --out DIR` runs it.
"""
