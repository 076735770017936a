"""shipit: build, tag, push and verify container images."""

__version__ = "0.1.0"
