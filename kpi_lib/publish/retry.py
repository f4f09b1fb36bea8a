"""How patiently a failed delivery is retried: exponential backoff, and ``Retry-After``.

Email (``send``), webhook posts (``channels``), alerts and operator notices share one policy.

Example
-------
>>> [RetryPolicy(attempts=4, base_delay=2, max_delay=5).delay(i) for i in (1, 2, 3)]
[2, 4, 5]
>>> retry_after("3"), retry_after(None)
(3.0, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 600.0
"""The longest ``Retry-After`` a run waits for (seconds); a longer one counts as this."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed send is retried.

    Attempt ``i`` (from 1) that fails transiently waits ``min(max_delay, base_delay * 2**(i-1))``
    seconds before the next (a webhook's ``Retry-After`` instead, when it gives one); after
    ``attempts`` tries the delivery counts as failed.

    Example
    -------
    >>> [RetryPolicy(attempts=4, base_delay=2, max_delay=5).delay(i) for i in (1, 2, 3)]
    [2, 4, 5]
    """

    attempts: int = 4
    base_delay: float = 2.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


def retry_after(value) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None.

    Example: ``retry_after("120")`` -> ``120.0``; a date in the past -> ``0.0``.
    """
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))
