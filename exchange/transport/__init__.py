"""RabbitMQ topology, confirmed publisher, verifying consumer, and the in-memory bus."""
