"""KISA-style scoring of alerts against hand-labelled events (pure functions, no video, no models).

An event counts as detected when an alert of its type (and zone, if the label names one) starts between
`EARLY_S` before and `LATE_S` after the labelled start. Each alert can detect one event and each event is
detected once. An alert that detects nothing is a false alarm, unless it starts while a labelled event of
its type is still going on (between its window start and its end + `LATE_S`): then it is a repeat of an
alert for that event and counted apart (`repeats`), neither helping nor hurting.
False alarms per hour are counted on event-free time only: the clip time outside every event's span.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

EARLY_S = 2.0
LATE_S = 10.0


@dataclass(frozen=True, slots=True)
class LabelledEvent:
    clip: str
    event_type: str
    start_s: float
    end_s: float | None = None
    zone: str | None = None

    @property
    def last_s(self) -> float:
        return self.start_s if self.end_s is None else self.end_s

    def window(self) -> tuple[float, float]:
        return self.start_s - EARLY_S, self.start_s + LATE_S

    def span(self) -> tuple[float, float]:
        """Time during which an alert of this type is about this event (matched or repeated)."""
        return self.start_s - EARLY_S, self.last_s + LATE_S

    def accepts(self, alert: RaisedAlert) -> bool:
        return (
            alert.clip == self.clip
            and alert.rule_type == self.event_type
            and (self.zone is None or self.zone == alert.zone)
        )


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    clip: str
    rule_type: str
    zone: str
    at_s: float  # clip time the alert was raised (its `new` event)


@dataclass(slots=True)
class TypeScore:
    event_type: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    repeats: int = 0
    onset_delays_s: list[float] = field(default_factory=list)
    event_free_s: float = 0.0
    false_alarms_in_event_free: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    @property
    def mean_onset_delay_s(self) -> float | None:
        return sum(self.onset_delays_s) / len(self.onset_delays_s) if self.onset_delays_s else None

    @property
    def false_alarms_per_hour(self) -> float | None:
        return self.false_alarms_in_event_free / (self.event_free_s / 3600.0) if self.event_free_s > 0 else None

    def as_dict(self) -> dict[str, object]:
        return {
            "event_type": self.event_type,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "repeats": self.repeats,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "mean_onset_delay_s": self.mean_onset_delay_s,
            "event_free_hours": self.event_free_s / 3600.0,
            "false_alarms_in_event_free": self.false_alarms_in_event_free,
            "false_alarms_per_hour": self.false_alarms_per_hour,
        }


def in_window(event: LabelledEvent, at_s: float) -> bool:
    low, high = event.window()
    # Rounded to the millisecond: alert times come from integer-ms capture times.
    return round(low, 3) <= round(at_s, 3) <= round(high, 3)


def _merged_length(spans: Iterable[tuple[float, float]], clip_s: float) -> float:
    total, current_end = 0.0, 0.0
    for low, high in sorted((max(0.0, a), min(clip_s, b)) for a, b in spans):
        if high <= current_end:
            continue
        total += high - max(low, current_end)
        current_end = high
    return total


def score(
    events: Sequence[LabelledEvent],
    alerts: Sequence[RaisedAlert],
    scored: dict[str, dict[str, float]],
) -> dict[str, TypeScore]:
    """`scored`: event type -> {clip: clip length in s} for every clip whose labels cover that type (a clip
    scores a type only if its annotation says so: unlabelled footage proves nothing)."""
    results: dict[str, TypeScore] = {}
    for event_type, clips in sorted(scored.items()):
        result = results[event_type] = TypeScore(event_type)
        for clip, clip_s in sorted(clips.items()):
            clip_events = sorted(
                (e for e in events if e.clip == clip and e.event_type == event_type), key=lambda e: e.start_s
            )
            clip_alerts = sorted(
                (a for a in alerts if a.clip == clip and a.rule_type == event_type), key=lambda a: a.at_s
            )
            used: set[int] = set()
            for event in clip_events:
                # The earliest unused alert inside the window detects the event.
                match = next(
                    (
                        i
                        for i, a in enumerate(clip_alerts)
                        if i not in used and event.accepts(a) and in_window(event, a.at_s)
                    ),
                    None,
                )
                if match is None:
                    result.fn += 1
                    continue
                used.add(match)
                result.tp += 1
                result.onset_delays_s.append(clip_alerts[match].at_s - event.start_s)
            for index, alert in enumerate(clip_alerts):
                if index in used:
                    continue
                if any(e.accepts(alert) and e.span()[0] <= alert.at_s <= e.span()[1] for e in clip_events):
                    result.repeats += 1
                else:
                    result.fp += 1
                    result.false_alarms_in_event_free += 1
            result.event_free_s += clip_s - _merged_length((e.span() for e in clip_events), clip_s)
    return results
