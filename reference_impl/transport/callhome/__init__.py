"""The call-home response stream every plane shares: the worker dials the caller back over TCP."""
