"""Secure cross-border exchange of signed asset-recovery requests over RabbitMQ."""

__version__ = "0.1.0"
