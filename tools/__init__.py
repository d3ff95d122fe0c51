"""Developer tooling: the loopback S3 server and other helpers for local runs."""
