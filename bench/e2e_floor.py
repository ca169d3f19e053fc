"""The protocol floor of `bench/e2e.py`: the broker work of one message, done by raw aio-pika.

No HTTP, crypto or disk: for each message, the sender publishes a persistent request of the
signed envelope's size, with a publisher confirm, to the topic exchange; the broker routes it
into the recipient's quorum inbox and copies it into the audit stream (the exchange-to-
exchange binding into the fanout exchange that the stream queue is bound to). The recipient
consumes it, publishes a confirmed persistent receipt the same way (into the sender's inbox,
also copied into the stream) and then acks the request, as the relay does; the sender
consumes the receipt and acks it. The topology is declared from `exchange.transport.topology`
(the nodes' own declarations) under a prefix of its own. Requests are published `window` at
a time and gathered; the recipient has up to `prefetch` deliveries (and so receipts) in
flight. msg/s = messages / (first publish -> last receipt acked).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from exchange.transport.topology import DestinationKind, Topology

SENDER, RECIPIENT = "AL-ARO", "RS-PPO"


async def declare(channel: AbstractChannel, topology: Topology) -> dict[str, AbstractExchange]:
    """Exchanges, queues and bindings of both nodes, as the nodes declare them."""
    decl = topology.for_node(SENDER) + topology.for_node(RECIPIENT)
    exchanges = {
        e.name: await channel.declare_exchange(
            e.name, aio_pika.ExchangeType(e.kind.value), durable=True
        )
        for e in decl.exchanges
    }
    queues = {
        q.name: await channel.declare_queue(
            q.name, durable=True, arguments=dict[str, Any](q.argument_map)
        )
        for q in decl.queues
    }
    for b in decl.bindings:
        if b.destination_kind == DestinationKind.EXCHANGE:
            await exchanges[b.destination].bind(exchanges[b.source], routing_key=b.routing_key)
        else:
            await queues[b.destination].bind(exchanges[b.source], routing_key=b.routing_key)
    return exchanges


def _message(body: bytes, sender: str) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(uuid.uuid4()),  # unique: returns are matched by message id
        headers={"x-xb-sender": sender},
    )


async def floor_run(
    url: str, n: int, request_bytes: int, receipt_bytes: int, window: int, prefetch: int
) -> dict[str, Any]:
    """One run: `n` requests and their receipts; msg/s and the rates of each side."""
    topology = Topology(prefix=f"floor{uuid.uuid4().hex[:8]}")
    sender_conn = await aio_pika.connect(url)
    recipient_conn = await aio_pika.connect(url)
    try:
        s_pub = await sender_conn.channel(publisher_confirms=True, on_return_raises=True)
        s_sub = await sender_conn.channel()
        r_pub = await recipient_conn.channel(publisher_confirms=True, on_return_raises=True)
        r_sub = await recipient_conn.channel()
        await declare(s_pub, topology)
        name = topology.messages.name
        s_messages = await s_pub.get_exchange(name, ensure=False)
        r_messages = await r_pub.get_exchange(name, ensure=False)
        request_key = topology.routing_key(RECIPIENT, "asset-inquiry", SENDER)
        receipt_key = topology.routing_key(SENDER, "receipt", RECIPIENT)
        request, receipt = os.urandom(request_bytes), os.urandom(receipt_bytes)
        done = asyncio.get_running_loop().create_future()
        receipts = 0

        async def on_request(message: AbstractIncomingMessage) -> None:
            await r_messages.publish(_message(receipt, RECIPIENT), receipt_key)
            await message.ack()

        async def on_receipt(message: AbstractIncomingMessage) -> None:
            nonlocal receipts
            await message.ack()
            receipts += 1
            if receipts == n and not done.done():
                done.set_result(time.perf_counter())

        await r_sub.set_qos(prefetch_count=prefetch)
        await s_sub.set_qos(prefetch_count=prefetch)
        r_inbox = await r_sub.get_queue(topology.inbox_queue(RECIPIENT), ensure=False)
        s_inbox = await s_sub.get_queue(topology.inbox_queue(SENDER), ensure=False)
        await r_inbox.consume(on_request)
        await s_inbox.consume(on_receipt)
        start = time.perf_counter()
        for first in range(0, n, window):
            await asyncio.gather(
                *(
                    s_messages.publish(_message(request, SENDER), request_key)
                    for _ in range(min(window, n - first))
                )
            )
        published = time.perf_counter()
        end = await asyncio.wait_for(done, 300)
    finally:
        await recipient_conn.close()
        await sender_conn.close()
    return {
        "messages": n,
        "request_bytes": request_bytes,
        "receipt_bytes": receipt_bytes,
        "window": window,
        "prefetch": prefetch,
        "seconds": round(end - start, 3),
        "publish_msg_s": round(n / (published - start), 1),
        "msg_s": round(n / (end - start), 1),
    }
