"""The node's aiohttp gateway: routes, auth, problem details, outbox and inbox."""
