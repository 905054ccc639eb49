"""The HTTP request plane: a POST per request over HTTP/1.1 or h2c, the ACK as the response."""
