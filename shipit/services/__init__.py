"""Workflows over injected clients: build, push, login, release, smoke, run, inspect, prune, doctor."""
