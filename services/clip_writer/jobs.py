"""Open clips and the alert offsets that may be committed (pure bookkeeping, no Kafka).

An incident's clip is open from its first alert (NEW) until its objects and manifest are stored. The
alert offsets of an open clip are never committed, so a writer that dies mid-clip is replaced by one
that re-reads the incident from its first alert and finishes the clip (object keys are deterministic,
objects already stored are not written again).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.clip_writer.core import ClipPolicy, Incident


@dataclass
class ClipJob:
    incident: Incident
    partition: int
    first_offset: int  # the first alert of the incident seen by this writer
    ended: bool = False
    stored_keys: dict[str, str] = field(default_factory=dict)  # key -> sha256 already in the bucket
    attempts: int = 0
    retry_at_us: int = 0
    last_error: str | None = None

    def due(self, policy: ClipPolicy, now_us: int) -> bool:
        return self.ended and now_us >= self.incident.due_at_us(policy) and now_us >= self.retry_at_us


class OpenClips:
    """Jobs by alert id plus, per partition, the offsets consumed, so commits never pass an open clip."""

    def __init__(self) -> None:
        self.jobs: dict[str, ClipJob] = {}
        self._next_offset: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.jobs)

    def ended_count(self) -> int:
        return sum(1 for job in self.jobs.values() if job.ended)

    def seen(self, partition: int, offset: int) -> None:
        self._next_offset[partition] = max(self._next_offset.get(partition, 0), offset + 1)

    def alert(self, partition: int, offset: int, kind: str, incident: Incident) -> ClipJob:
        """Record an alert step; returns the incident's job (created at the first step seen)."""
        self.seen(partition, offset)
        job = self.jobs.get(incident.alert_id)
        if job is None:
            job = self.jobs[incident.alert_id] = ClipJob(incident, partition, offset)
        if kind == "END":
            # The end is known: the clip is due after its post-roll, not at the next segment check.
            job.incident, job.ended, job.retry_at_us = incident, True, 0
        return job

    def finish(self, alert_id: str) -> None:
        self.jobs.pop(alert_id, None)

    def commit_offsets(self) -> dict[int, int]:
        """Per partition, the offset to commit: the first alert of the oldest open clip, else past the last."""
        offsets = dict(self._next_offset)
        for job in self.jobs.values():
            offsets[job.partition] = min(offsets.get(job.partition, job.first_offset), job.first_offset)
        return offsets

    def forget_partitions(self, partitions: set[int]) -> None:
        """Revoked partitions: their open clips are finished by the partitions' new owner."""
        for alert_id in [a for a, job in self.jobs.items() if job.partition in partitions]:
            del self.jobs[alert_id]
        for partition in partitions:
            self._next_offset.pop(partition, None)
