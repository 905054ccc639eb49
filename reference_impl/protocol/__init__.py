"""Message-level protocol: control messages, envelopes, routing keys, state machines. Sans-IO."""
