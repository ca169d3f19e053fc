"""Case updates for prosecutor networks: fan-out, SSE stream, webhooks."""
