"""The NATS request plane: a request/reply on the endpoint's subject through a NATS server."""
