"""A scheduled job's ``schedule`` (Tron's formats), parsed and stepped. Pure.

    cron MIN HOUR DOM MON DOW      five cron fields (croniter), e.g. "cron */5 * * * *"
    daily [HH:MM[:SS]] [DAYS]      every day at that time (00:00:00), DAYS like "MWF" (Tron:
                                   M T W R F S U)
    {type: cron|daily, value: "..."}

Times are in the job's ``time_zone`` (Tron's default US/Pacific); ``next_after`` takes and gives
epoch seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

DEFAULT_TIME_ZONE = "US/Pacific"
_DAILY = re.compile(r"(?:(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*([MTWRFSU]+)?")
_DAY_LETTERS = "MTWRFSU"  # Monday first, like datetime.weekday()
FORMATS = '"cron MIN HOUR DOM MON DOW" or "daily HH:MM[:SS] [MTWRFSU]"'


@dataclass(frozen=True)
class Schedule:
    kind: str  # "cron" | "daily"
    value: str  # the cron fields, or "HH:MM:SS [DAYS]"
    time_zone: str = DEFAULT_TIME_ZONE

    @property
    def text(self) -> str:
        return f"{self.kind} {self.value}".strip()

    def next_after(self, at: float) -> float:
        """The first time strictly after ``at`` it fires (epoch seconds)."""
        zone = ZoneInfo(self.time_zone)
        start = datetime.fromtimestamp(at, zone)
        if self.kind == "cron":
            return float(croniter(self.value, start).get_next(float))
        return _next_daily(self.value, start).timestamp()


def _next_daily(value: str, start: datetime) -> datetime:
    match = _DAILY.fullmatch(value.strip())
    assert match is not None  # parse_schedule checked it
    hour, minute, second = (int(match.group(i) or 0) for i in (1, 2, 3))
    days = match.group(4) or _DAY_LETTERS
    allowed = {_DAY_LETTERS.index(d) for d in days}
    candidate = start.replace(hour=hour, minute=minute, second=second, microsecond=0)
    for _ in range(9):
        if candidate > start and candidate.weekday() in allowed:
            return candidate
        day = (candidate + timedelta(days=1)).date()
        # the wall-clock time again on the next day (a DST change moves it in UTC, not here)
        candidate = datetime(day.year, day.month, day.day, hour, minute, second,
                             tzinfo=start.tzinfo)  # fmt: skip
    raise AssertionError("a daily schedule fires within 8 days")


def parse_schedule(value: object, time_zone: str | None = None) -> tuple[Schedule | None, str]:
    """(the schedule, "") or (None, what is wrong, for people)."""
    zone = time_zone or DEFAULT_TIME_ZONE
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None, f'time_zone: expected a time zone like "UTC" or "US/Pacific", found "{zone}"'
    if isinstance(value, dict):
        kind, text = value.get("type"), value.get("value", "")
        if not isinstance(kind, str) or not isinstance(text, str):
            return None, f"expected {{type: cron|daily, value: TEXT}}, found {value!r}"
        value = f"{kind} {text}"
    if not isinstance(value, str):
        return None, f'expected {FORMATS}, found "{value}"'
    kind, _, rest = value.strip().partition(" ")
    rest = " ".join(rest.split())
    if kind == "cron":
        if len(rest.split()) != 5 or not croniter.is_valid(rest):
            return None, f'expected five cron fields after "cron", found "{rest}"'
        return Schedule("cron", rest, zone), ""
    if kind == "daily":
        match = _DAILY.fullmatch(rest)
        if match is None:
            return None, f'expected "daily HH:MM[:SS] [MTWRFSU]", found "{value}"'
        hour, minute, second = (int(match.group(i) or 0) for i in (1, 2, 3))
        if hour > 23 or minute > 59 or second > 59:
            return None, f'expected a time of day 00:00:00-23:59:59, found "{value}"'
        days = match.group(4) or ""
        text = f"{hour:02d}:{minute:02d}:{second:02d}" + (f" {days}" if days else "")
        return Schedule("daily", text, zone), ""
    return None, f'expected {FORMATS}, found "{value}"'
