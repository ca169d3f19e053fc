"""A robust AMQP connection over the nodes of one broker cluster, tried in turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aio_pika
from yarl import URL

# aio-pika's robust connection makes every (re)connection attempt in this method; the name
# is mangled from `__connect_transport`. tests/unit/test_amqp_failover.py checks it exists.
_CONNECT_ATTEMPT = "_RobustConnection__connect_transport"


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over several brokers: each attempt takes the next URL in turn.

    Channels, consumers and their prefetch are restored by aio-pika after a reconnection,
    whichever broker it reached. Every URL shares the first one's query options.
    """

    def __init__(self, urls: Sequence[str], first: int = 0, **kwargs: Any) -> None:
        if not urls:
            raise ValueError("a connection needs at least one broker URL")
        self._urls = [URL(url) for url in urls]
        self._next = first % len(self._urls)
        super().__init__(self._urls[self._next], **kwargs)

    async def _RobustConnection__connect_transport(self) -> None:
        self.url = self._urls[self._next]
        self._next = (self._next + 1) % len(self._urls)
        attempt = getattr(super(), _CONNECT_ATTEMPT)
        await attempt()
