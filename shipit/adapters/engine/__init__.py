"""The Docker engine adapter: the one place that imports docker-py."""
