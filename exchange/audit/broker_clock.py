"""When the broker wrote each record of the audit stream, as the broker itself tells it.

RabbitMQ 3.10 hands a stream reader no per-record time of its own (see
`exchange.transport.amqp_stream`): only where a reader attaching at a time would start,
to the second. That answer, F(t) = the first offset written at or after t, only grows
with t, so one answer bounds every record on either side of it. `BrokerClock` asks as
little as it can and keeps every answer.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

Probe = Callable[[datetime], Awaitable[int | None]]
"""The offset of the first record written at or after a time; None: none written since."""


@dataclass(slots=True)
class _Answer:
    first: int
    exact: bool
    """False when the broker had written nothing since: `first` is then only a lower bound
    (one past the last record known to exist when it was asked)."""


class BrokerClock:
    """Answers "did the broker write record `offset` before `when`?" for one stream."""

    def __init__(self, probe: Probe) -> None:
        self._probe = probe
        self._times: list[datetime] = []  # sorted, whole seconds
        self._answers: list[_Answer] = []
        self._horizon = -1  # the highest offset known to exist
        self.probes = 0

    async def written_before(self, offset: int, when: datetime) -> bool:
        """Whether record `offset` (which exists) was written before `when`, taken down to
        its second."""
        self._horizon = max(self._horizon, offset)
        when = floor_time(when, timedelta(seconds=1))
        i = bisect.bisect_left(self._times, when)
        here = self._answers[i] if i < len(self._times) and self._times[i] == when else None
        if here is not None:
            if offset < here.first:
                return True
            if here.exact:
                return False
        else:
            if i > 0 and offset < self._answers[i - 1].first:  # F(when) >= that answer
                return True
            above = self._answers[i] if i < len(self._times) else None
            if above is not None and above.exact and offset >= above.first:  # F(when) <= it
                return False
        first = await self._probe(when)
        self.probes += 1
        answer = _Answer(first, True) if first is not None else _Answer(self._horizon + 1, False)
        if here is not None:
            self._answers[i] = answer
        else:
            self._times.insert(i, when)
            self._answers.insert(i, answer)
        return offset < answer.first


def floor_time(when: datetime, step: timedelta) -> datetime:
    """`when` rounded down to a multiple of `step` since the epoch (UTC)."""
    seconds = step.total_seconds()
    return datetime.fromtimestamp(when.timestamp() // seconds * seconds, UTC)


def ceil_time(when: datetime, step: timedelta) -> datetime:
    """`when` rounded up to a multiple of `step` since the epoch (UTC)."""
    floor = floor_time(when, step)
    return floor if floor == when else floor + step
