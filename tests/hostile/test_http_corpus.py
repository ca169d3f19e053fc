"""Every HTTP case of the bad-input corpus is refused with its status and code, audited as the
design says, and leaves the store exactly as it was (nothing in the outbox, no message).

One gateway serves the whole module: refusals must not change it, so sharing it is itself
a check (the row counts are compared around every case). A control case shows that the
body the cases edit is accepted, so each refusal is due to the case's own change.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from hostile_corpus import Case, load_cases
from hostile_http import NODE, HttpTarget, run_http_case, valid_submission
from hostile_node import store_counts
from http_helpers import auth_headers

from exchange.gateway.app import create_app
from exchange.network import init_network_dir

pytestmark = pytest.mark.asyncio(loop_scope="module")

HTTP_CASES = load_cases("http")


@contextlib.asynccontextmanager
async def open_target(root: Path) -> AsyncIterator[HttpTarget]:
    """A fresh network on disk and its AL-ARO gateway, HTTP only (no relay); AL-ARO is a
    member of the prosecutor network see-pcn."""
    nodes = [NODE, "RS-PPO", "MD-ARO"]
    network = init_network_dir(root / "net", nodes, bus="memory", networks={"see-pcn": nodes})
    config = network.config(NODE, environ={"EXCHANGE_DATA_DIR": str(root / "data")})
    app = create_app(config, start_relay=False)
    async with TestClient(TestServer(app)) as client:
        yield HttpTarget(client, app, network)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpTarget]:
    async with open_target(tmp_path_factory.mktemp("hostile-http")) as opened:
        yield opened


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
async def test_hostile_http_case_is_refused_audited_and_changes_nothing(
    target: HttpTarget, case: Case
) -> None:
    await run_http_case(target, case)


async def test_the_bodies_that_cases_edit_are_accepted_as_they_are(tmp_path: Path) -> None:
    """So each refusal above is due to the case's own change, not to a broken base."""
    async with open_target(tmp_path) as fresh:
        types = {c.doc["request"].get("submission_type", "asset-inquiry") for c in HTTP_CASES}
        types.discard(
            "case-update"
        )  # only a member of a network may send one; the base body names see-arn
        for message_type in sorted(types):
            response = await fresh.client.post(
                "/v1/messages",
                json=valid_submission(message_type),
                headers=auth_headers(fresh.network, NODE),
            )
            assert response.status == 202, await response.text()
        counts = await store_counts(fresh.app)
        assert (counts["messages"], counts["outbox"]) == (len(types), len(types))
