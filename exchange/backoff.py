"""How long to wait before trying again: exponential, capped, with jitter."""

from __future__ import annotations

import random


def retry_delay(attempts: int, minimum: float, maximum: float, *, jitter: float = 0.2) -> float:
    """Seconds before the next try after `attempts` failed ones: `minimum` doubled per
    failure up to `maximum`, spread by ±`jitter` so that many retries do not move as one."""
    base = min(maximum, minimum * (2 ** min(max(attempts, 0), 30)))
    return float(base * random.uniform(1.0 - jitter, 1.0 + jitter))
