"""`exchange demo`: three authorities and a crypto exchange exchanging the requests of one case.

The runner creates the network (CA, certificates, configurations) in a directory, starts
the nodes' gateways in this process over RabbitMQ or the in-memory bus, and plays the
scenario through the HTTP API, checking every status, receipt and signature as it goes.
"""
