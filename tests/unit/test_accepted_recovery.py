"""A node killed between committing a submitted message and auditing it completes its audit
record at the next start: the `accepted` entry is appended once, marked recovered, and
messages audited already are left alone."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from http_helpers import auth_headers, submission

from exchange.audit.entries import AuditEvent
from exchange.gateway import keys
from exchange.gateway.app import create_app
from exchange.gateway.submit import check_payload, parse_submission, sign_submission
from exchange.network import NetworkLayout

pytestmark = pytest.mark.network(nodes=["AL-ARO", "RS-PPO"])


async def test_a_message_stored_but_not_audited_is_audited_once_at_the_next_start(
    network: NetworkLayout, tmp_path: Path
) -> None:
    config = network.config("AL-ARO", environ={"EXCHANGE_DATA_DIR": str(tmp_path / "data")})
    app = create_app(config, start_relay=False)
    async with TestClient(TestServer(app)) as client:
        answered = await client.post(
            "/v1/messages",
            json=submission(),
            headers=auth_headers(network, "AL-ARO"),
        )
        assert answered.status == 202
        normal = (await answered.json())["id"]
        # The crash: the store has committed the message, the audit append never ran.
        request = parse_submission(submission())
        signed = sign_submission(
            request,
            check_payload(request),
            config=config,
            signer=app[keys.SIGNER],
            submitted_by="contact-point",
        )
        await app[keys.STORE].submit(signed.record)
        lost = str(signed.record.id)
        before = await app[keys.AUDIT].entries(0, 1000)
        assert [e.message_id for e in before if e.event == AuditEvent.ACCEPTED] == [normal]

    for _ in range(2):  # restarted twice: recovered once
        app = create_app(config, start_relay=False)
        async with TestClient(TestServer(app)):
            entries = await app[keys.AUDIT].entries(0, 1000)
    accepted = [e for e in entries if e.event == AuditEvent.ACCEPTED]
    assert [e.message_id for e in accepted] == [normal, lost]
    recovered = accepted[1]
    assert recovered.detail == {"recovered": True}
    assert recovered.digest == signed.record.digest
    assert recovered.case == signed.record.case
    assert recovered.envelope == orjson.loads(signed.record.envelope)
    assert (recovered.actor, recovered.role) == ("contact-point", "contact-point")
    assert accepted[0].detail is None
