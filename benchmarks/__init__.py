"""Benchmarks (not tests): `make bench` prints one JSON object."""
