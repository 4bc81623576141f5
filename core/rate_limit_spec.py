"""A rate limit as the settings spell it (`1000/h`, `10/15m`): parsed here so that the settings can refuse a
malformed one at start-up; `services/rate_limit.py` enforces it."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*([a-z]*)\s*$")


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    window_s: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        """'1000/3600', '1000/h', '10/15m', '30/minute'."""
        match = _LIMIT.match(text.lower())
        if not match:
            raise ValueError(f"invalid rate limit '{text}': use COUNT/SECONDS or COUNT/UNIT (e.g. 1000/h, 10/15m)")
        count, number, unit = int(match.group(1)), match.group(2), match.group(3)
        if unit and unit not in _UNITS:
            raise ValueError(f"invalid rate limit unit '{unit}' in '{text}'")
        window = int(number or 1) * (_UNITS[unit] if unit else 1)
        if count < 1 or window < 1:
            raise ValueError(f"invalid rate limit '{text}': count and window must be positive")
        return cls(count, window)

    def scaled(self, factor: float) -> Limit:
        return Limit(max(1, int(self.count * factor)), self.window_s)
