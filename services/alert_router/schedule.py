"""Weekly schedules (days + time-of-day windows in a named time zone) for zones and routes."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TimeWindow(BaseModel):
    """`start`..`end` local time on each of `days`. An `end` earlier than `start` runs past midnight
    (22:00-06:00 on "mon" covers Monday 22:00 to Tuesday 06:00)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS), min_length=1)
    start: time
    end: time

    @model_validator(mode="after")
    def _start_differs_from_end(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError(
                f"time window start and end are both {self.start.isoformat('minutes')}; "
                "leave the schedule out to mean 'always', or give a window such as 00:00-23:59"
            )
        return self

    def contains(self, local: datetime) -> bool:
        clock = local.time().replace(tzinfo=None)
        today = ALL_DAYS[local.weekday()]
        if self.start < self.end:
            return today in self.days and self.start <= clock < self.end
        # Wraps midnight: the evening part belongs to today, the early-morning part to yesterday's window.
        yesterday = ALL_DAYS[(local - timedelta(days=1)).weekday()]
        return (today in self.days and clock >= self.start) or (yesterday in self.days and clock < self.end)


class WeeklySchedule(BaseModel):
    """Active when the local time (in `timezone`) falls in any of `windows`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    windows: list[TimeWindow] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Europe/London'") from error
        return value

    def is_active(self, epoch_ms: int) -> bool:
        local = datetime.fromtimestamp(epoch_ms / 1000.0, tz=ZoneInfo(self.timezone))
        return any(window.contains(local) for window in self.windows)
