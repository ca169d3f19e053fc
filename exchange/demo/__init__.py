"""`exchange demo`: a network of three nodes exchanging the requests of one real case.

The runner creates the network (CA, certificates, configurations) in a directory, starts
the nodes' gateways in this process over RabbitMQ or the in-memory bus, and plays the
scenario through the HTTP API, checking every status, receipt and signature as it goes.
"""
