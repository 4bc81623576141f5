"""The HTTP/WebSocket API: a FastAPI app behind a Ray Serve ingress deployment."""
