"""The TCP request plane: length-prefixed request frames to a worker's listener, an ACK frame back."""
