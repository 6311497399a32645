"""End-to-end accounting read from the topics: what a fault run lost or duplicated, as plain functions.

The pipeline is at-least-once (docs/reliability.md): a service killed between producing and committing
produces again after its restart. The accounting deduplicates the way a downstream consumer must:
frames and detections by frame coordinates (camera, capture time), alerts by (alert id, step sequence).
What is left after deduplication must be exact: one Detections record per sampled frame, one NEW per
incident, an END for every incident but the newest of its zone and rule (it may still be open), and an
incident never split in two (a second NEW sooner than the end grace after the first one's last activity).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

FrameKey = tuple[str, int]  # (camera id, capture time in µs): the same for a frame sampled twice


def _micros(value: Any) -> int:
    """Timestamps as the project's serde gives them (µs ints) or as a registry deserializer (datetimes)."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000)
    return int(value)


@dataclass(frozen=True)
class FrameAccount:
    frames: int  # distinct frames the sampler published
    frame_duplicates: int  # raw records beyond one per frame (a sampler replay after a crash)
    detections: int  # distinct frames with a Detections record
    detection_duplicates: int  # raw Detections records beyond one per frame (a detector replay)
    missing: list[FrameKey] = field(default_factory=list)  # frames without any Detections record
    orphans: list[FrameKey] = field(default_factory=list)  # Detections of frames never published


def account_frames(frames: Iterable[Mapping[str, Any]], detections: Iterable[Mapping[str, Any]]) -> FrameAccount:
    """Frame and Detections records (Avro dicts, any order) → counts after dedup by frame coordinates."""
    frame_counts = Counter((f["camera_id"], _micros(f["capture_time"])) for f in frames)
    detection_counts = Counter((d["camera_id"], _micros(d["capture_time"])) for d in detections)
    return FrameAccount(
        frames=len(frame_counts),
        frame_duplicates=sum(frame_counts.values()) - len(frame_counts),
        detections=len(detection_counts),
        detection_duplicates=sum(detection_counts.values()) - len(detection_counts),
        missing=sorted(set(frame_counts) - set(detection_counts)),
        orphans=sorted(set(detection_counts) - set(frame_counts)),
    )


@dataclass(frozen=True)
class Incident:
    """One alert id's steps after dedup."""

    alert_id: str
    camera_id: str
    zone_id: str
    rule_id: str
    kinds: list[str]  # by step sequence
    started_at_us: int
    ended_at_us: int | None  # the END's ended_at (capture time of its last activity)


@dataclass(frozen=True)
class AlertAccount:
    records: int  # raw alert records read
    duplicates: int  # raw records beyond one per (alert id, sequence): replays a consumer drops
    incidents: int
    new: int  # NEW steps after dedup
    end: int
    still_open: int  # newest incident of its zone and rule without END (allowed at the end of a run)
    problems: list[str] = field(default_factory=list)


def account_alerts(alerts: Iterable[Mapping[str, Any]], end_grace_s: float) -> AlertAccount:
    """Alert records of cctv.alerts.v1 (any order) → counts, and every lost, split or unstable incident."""
    steps: dict[tuple[str, int], Mapping[str, Any]] = {}
    problems: list[str] = []
    raw = 0
    for alert in alerts:
        raw += 1
        key = (alert["alert_id"], int(alert["sequence"]))
        seen = steps.setdefault(key, alert)
        if seen is not alert and (seen["kind"], _micros(seen["detected_at"])) != (
            alert["kind"],
            _micros(alert["detected_at"]),
        ):
            problems.append(f"alert {key[0][:8]} step {key[1]} differs between copies: ids not stable on replay")
    by_id: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for (alert_id, _sequence), alert in sorted(steps.items()):
        by_id[alert_id].append(alert)
    incidents = [_incident(alert_id, records, problems) for alert_id, records in by_id.items()]
    problems.extend(_check_timelines(incidents, end_grace_s))
    still_open = _newest_open(incidents)
    return AlertAccount(
        records=raw,
        duplicates=raw - len(steps),
        incidents=len(incidents),
        new=sum(i.kinds.count("NEW") for i in incidents),
        end=sum(i.kinds.count("END") for i in incidents),
        still_open=len(still_open),
        problems=problems,
    )


def _incident(alert_id: str, records: list[Mapping[str, Any]], problems: list[str]) -> Incident:
    first = records[0]
    kinds = [r["kind"] for r in records]
    if kinds.count("NEW") != 1 or kinds[0] != "NEW":
        problems.append(f"incident {alert_id[:8]} has steps {kinds}: exactly one NEW, first, expected")
    if kinds.count("END") > 1 or ("END" in kinds and kinds[-1] != "END"):
        problems.append(f"incident {alert_id[:8]} has steps {kinds}: at most one END, last")
    if len({_micros(r["started_at"]) for r in records}) != 1:
        problems.append(f"incident {alert_id[:8]} changed its start time between steps")
    end = next((r for r in records if r["kind"] == "END"), None)
    return Incident(
        alert_id=alert_id,
        camera_id=first["camera_id"],
        zone_id=first["zone_id"],
        rule_id=first["rule_id"],
        kinds=kinds,
        started_at_us=_micros(first["started_at"]),
        ended_at_us=None if end is None or end["ended_at"] is None else _micros(end["ended_at"]),
    )


def _by_rule(incidents: list[Incident]) -> dict[tuple[str, str, str], list[Incident]]:
    grouped: dict[tuple[str, str, str], list[Incident]] = defaultdict(list)
    for incident in sorted(incidents, key=lambda i: i.started_at_us):
        grouped[(incident.camera_id, incident.zone_id, incident.rule_id)].append(incident)
    return grouped


def _check_timelines(incidents: list[Incident], end_grace_s: float) -> list[str]:
    """Incidents of one camera, zone and rule follow each other: each ends (END) before the next starts,
    at least the end grace later (sooner means one incident was ended early and split in two)."""
    problems = []
    grace_us = int(end_grace_s * 1_000_000)
    for (camera, zone, rule), timeline in _by_rule(incidents).items():
        for earlier, later in zip(timeline, timeline[1:], strict=False):
            where = f"{camera}/{zone}/{rule}"
            if earlier.ended_at_us is None:
                problems.append(f"{where}: incident {earlier.alert_id[:8]} lost its END (a later one started)")
            elif later.started_at_us - earlier.ended_at_us < grace_us:
                gap_s = (later.started_at_us - earlier.ended_at_us) / 1e6
                problems.append(
                    f"{where}: incident {later.alert_id[:8]} started {gap_s:.1f} s of capture time after "
                    f"{earlier.alert_id[:8]} ended (< end grace {end_grace_s:g} s): one incident split, two NEW"
                )
    return problems


def _newest_open(incidents: list[Incident]) -> list[Incident]:
    return [timeline[-1] for timeline in _by_rule(incidents).values() if timeline[-1].ended_at_us is None]


@dataclass(frozen=True)
class Accounting:
    frames: FrameAccount
    alerts: AlertAccount

    @property
    def problems(self) -> list[str]:
        found = list(self.alerts.problems)
        if self.frames.missing:
            found.append(f"{len(self.frames.missing)} sampled frames have no Detections: {self.frames.missing[:5]}")
        if self.frames.orphans:
            found.append(f"{len(self.frames.orphans)} Detections of unknown frames: {self.frames.orphans[:5]}")
        return found

    def summary(self) -> dict[str, Any]:
        frames, alerts = asdict(self.frames), asdict(self.alerts)
        frames["missing"], frames["orphans"] = len(self.frames.missing), len(self.frames.orphans)
        alerts.pop("problems")
        return {"frames": frames, "alerts": alerts, "problems": self.problems}

    def line(self) -> str:
        f, a = self.frames, self.alerts
        return (
            f"frames {f.frames} (+{f.frame_duplicates} raw duplicates), detections {f.detections} "
            f"(+{f.detection_duplicates} raw duplicates, {len(f.missing)} missing), alerts {a.records} records "
            f"(+{a.duplicates} duplicates): {a.incidents} incidents, NEW {a.new}, END {a.end}, "
            f"{a.still_open} still open, {len(self.problems)} problems"
        )


def account(
    frames: Iterable[Mapping[str, Any]],
    detections: Iterable[Mapping[str, Any]],
    alerts: Iterable[Mapping[str, Any]],
    end_grace_s: float,
) -> Accounting:
    return Accounting(account_frames(frames, detections), account_alerts(alerts, end_grace_s))
