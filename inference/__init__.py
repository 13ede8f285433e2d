"""Serving side: the SageMaker handler, a local server on the real toolkit, and the client."""
