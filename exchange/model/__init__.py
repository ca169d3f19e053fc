"""Pydantic models: the envelope, its header, and one module per message type's payload."""
