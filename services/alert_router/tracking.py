"""Time-aware multi-object tracker for low and irregular frame rates.

Why our own: motion gating delivers 0.5-10 fps with gaps. Frame-count trackers (ByteTrack, SORT) assume a
fixed step: their Kalman motion and lost-track buffers are in frames and their IoU association fails once a
person moves more than a box width between frames. Here every quantity is in seconds and body heights:
prediction uses the real time gap, the association gate grows with the gap, and tracks expire by time.
The whole state is plain numbers, so it snapshots to a JSON dict for a Faust table.
See docs in the report / bench numbers in tests/data/detections/README.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .config import TrackerSettings
from .model import Det, FrameDetections, TrackedBox

STATE_VERSION = 1
_INFEASIBLE = 1e6


@dataclass(slots=True)
class HistoryPoint:
    """One observation of a track: capture time, foot point (bottom centre) and box size (normalised)."""

    time_ms: int
    foot_x: float
    foot_y: float
    width: float
    height: float


@dataclass(slots=True)
class Track:
    track_id: int
    class_id: int
    class_name: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float
    # Centre velocity in normalised units per second.
    vx: float
    vy: float
    first_seen_ms: int
    last_seen_ms: int
    hits: int
    history: list[HistoryPoint] = field(default_factory=list)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    @property
    def foot(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, self.y2)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def box(self) -> TrackedBox:
        return TrackedBox(self.track_id, self.class_name, round(self.score, 4), self.x1, self.y1, self.x2, self.y2)

    def previous_point(self) -> HistoryPoint | None:
        """The observation before the latest one (None for a track seen once)."""
        return self.history[-2] if len(self.history) >= 2 else None

    def to_state(self) -> dict[str, Any]:
        return {
            "id": self.track_id,
            "cid": self.class_id,
            "cls": self.class_name,
            "score": self.score,
            "box": [self.x1, self.y1, self.x2, self.y2],
            "v": [self.vx, self.vy],
            "first": self.first_seen_ms,
            "last": self.last_seen_ms,
            "hits": self.hits,
            "hist": [[p.time_ms, p.foot_x, p.foot_y, p.width, p.height] for p in self.history],
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Track:
        x1, y1, x2, y2 = data["box"]
        vx, vy = data["v"]
        return cls(
            track_id=int(data["id"]),
            class_id=int(data["cid"]),
            class_name=str(data["cls"]),
            score=float(data["score"]),
            x1=float(x1),
            y1=float(y1),
            x2=float(x2),
            y2=float(y2),
            vx=float(vx),
            vy=float(vy),
            first_seen_ms=int(data["first"]),
            last_seen_ms=int(data["last"]),
            hits=int(data["hits"]),
            history=[HistoryPoint(int(t), float(fx), float(fy), float(w), float(h)) for t, fx, fy, w, h in data["hist"]],
        )


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class TimeAwareTracker:
    """Tracks one camera. Call `update(frame)` once per frame in capture-time order."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.tracks: list[Track] = []
        self.next_id = 1
        self.last_time_ms: int | None = None

    # ----------------------------------------------------------------- public API
    def update(self, frame: FrameDetections) -> list[Track]:
        """Associate this frame's detections; return the confirmed tracks observed in this frame.

        A frame not newer than the last one is ignored (returns []), so an at-least-once redelivery of an
        already-processed frame cannot disturb the state.
        """
        now = frame.capture_time_ms
        if self.last_time_ms is not None and now <= self.last_time_ms:
            return []
        settings = self.settings
        self._expire(now)

        usable = [d for d in frame.detections if d.score >= settings.min_score]
        strong = [d for d in usable if d.score >= settings.new_track_score]
        weak = [d for d in usable if d.score < settings.new_track_score]

        # ByteTrack's idea kept: confident detections first, then weak ones may only extend leftover tracks.
        matched_tracks: set[int] = set()
        unmatched_strong = self._associate(strong, self.tracks, matched_tracks, now, frame.aspect)
        leftovers = [t for t in self.tracks if t.track_id not in matched_tracks]
        self._associate(weak, leftovers, matched_tracks, now, frame.aspect)

        # Tentative tracks that failed to match again are noise: drop them (as SORT/ByteTrack do).
        self.tracks = [
            t for t in self.tracks if t.track_id in matched_tracks or t.hits >= settings.min_hits
        ]
        for det in unmatched_strong:
            self.tracks.append(self._new_track(det, now))
        self.last_time_ms = now
        return [t for t in self.tracks if t.last_seen_ms == now and t.hits >= settings.min_hits]

    def active_track_ids(self) -> set[int]:
        return {t.track_id for t in self.tracks}

    def get(self, track_id: int) -> Track | None:
        for track in self.tracks:
            if track.track_id == track_id:
                return track
        return None

    def to_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "next_id": self.next_id,
            "last_time_ms": self.last_time_ms,
            "tracks": [t.to_state() for t in self.tracks],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], settings: TrackerSettings | None = None) -> TimeAwareTracker:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"tracker state version {state.get('version')!r} is not supported (expected {STATE_VERSION}); "
                "drop the stored state for this camera to start fresh"
            )
        tracker = cls(settings)
        tracker.next_id = int(state["next_id"])
        tracker.last_time_ms = None if state["last_time_ms"] is None else int(state["last_time_ms"])
        tracker.tracks = [Track.from_state(t) for t in state["tracks"]]
        return tracker

    # ----------------------------------------------------------------- internals
    def _expire(self, now: int) -> None:
        max_age_ms = self.settings.max_age_s * 1000.0
        self.tracks = [t for t in self.tracks if now - t.last_seen_ms <= max_age_ms]

    def _cost(self, track: Track, det: Det, now: int, aspect: float) -> float:
        if track.class_name != det.class_name:
            return _INFEASIBLE
        settings = self.settings
        gap_s = (now - track.last_seen_ms) / 1000.0
        predict_s = min(gap_s, settings.max_predict_s)
        pred_cx = track.center[0] + track.vx * predict_s
        pred_cy = track.center[1] + track.vy * predict_s
        det_cx, det_cy = (det.x1 + det.x2) / 2.0, (det.y1 + det.y2) / 2.0
        det_h = det.y2 - det.y1
        body = max(track.height, det_h)
        # Distances in units of frame height so x and y weigh the same, then in body heights.
        distance = math.hypot((det_cx - pred_cx) * aspect, det_cy - pred_cy) / body
        gate = settings.base_gate_heights + settings.max_speed_heights_per_s * gap_s
        scale_change = abs(math.log(det_h / track.height))
        if distance > gate or scale_change > math.log(2.0):
            return _INFEASIBLE
        shift = (pred_cx - track.center[0], pred_cy - track.center[1])
        predicted_box = (track.x1 + shift[0], track.y1 + shift[1], track.x2 + shift[0], track.y2 + shift[1])
        overlap = _iou(predicted_box, (det.x1, det.y1, det.x2, det.y2))
        # Normalised distance dominates; overlap and size agreement break ties between close candidates.
        return distance / gate + 0.5 * (1.0 - overlap) + 0.5 * scale_change

    def _associate(
        self, dets: list[Det], tracks: list[Track], matched_tracks: set[int], now: int, aspect: float
    ) -> list[Det]:
        """Hungarian assignment; updates matched tracks in place and returns the unmatched detections."""
        candidates = [t for t in tracks if t.track_id not in matched_tracks]
        if not dets or not candidates:
            return list(dets)
        cost = np.array([[self._cost(t, d, now, aspect) for d in dets] for t in candidates])
        rows, cols = linear_sum_assignment(cost)
        used: set[int] = set()
        for row, col in zip(rows, cols, strict=True):
            if cost[row, col] >= _INFEASIBLE:
                continue
            self._apply(candidates[row], dets[col], now)
            matched_tracks.add(candidates[row].track_id)
            used.add(col)
        return [d for i, d in enumerate(dets) if i not in used]

    def _apply(self, track: Track, det: Det, now: int) -> None:
        gap_s = (now - track.last_seen_ms) / 1000.0
        new_cx, new_cy = (det.x1 + det.x2) / 2.0, (det.y1 + det.y2) / 2.0
        old_cx, old_cy = track.center
        if gap_s > 0:
            measured_vx, measured_vy = (new_cx - old_cx) / gap_s, (new_cy - old_cy) / gap_s
            # Trust a fresh measurement more when the previous velocity is itself unmeasured.
            blend = 1.0 if track.hits == 1 else 0.5
            track.vx = blend * measured_vx + (1.0 - blend) * track.vx
            track.vy = blend * measured_vy + (1.0 - blend) * track.vy
        track.x1, track.y1, track.x2, track.y2 = det.x1, det.y1, det.x2, det.y2
        track.score = det.score
        track.class_id = det.class_id
        track.last_seen_ms = now
        track.hits += 1
        self._remember(track, now)

    def _new_track(self, det: Det, now: int) -> Track:
        track = Track(
            track_id=self.next_id,
            class_id=det.class_id,
            class_name=det.class_name,
            score=det.score,
            x1=det.x1,
            y1=det.y1,
            x2=det.x2,
            y2=det.y2,
            vx=0.0,
            vy=0.0,
            first_seen_ms=now,
            last_seen_ms=now,
            hits=1,
        )
        self.next_id += 1
        self._remember(track, now)
        return track

    def _remember(self, track: Track, now: int) -> None:
        foot_x, foot_y = track.foot
        track.history.append(HistoryPoint(now, foot_x, foot_y, track.width, track.height))
        horizon = now - self.settings.history_s * 1000.0
        # Keep one point older than the horizon so speed over a long gap can still be measured.
        while len(track.history) > 2 and track.history[1].time_ms < horizon:
            track.history.pop(0)


def confirmed_boxes(tracks: Iterable[Track]) -> list[TrackedBox]:
    return [t.box() for t in tracks]
