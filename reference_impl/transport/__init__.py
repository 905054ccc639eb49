"""asyncio transports: Protocol subclasses driving the sans-IO codecs."""
