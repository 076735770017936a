"""hello-flask: the sample web app that shipit builds, tags and pushes.

Endpoints:
  /         a plain-text greeting
  /health   200 {"status": "ok"} for load-balancer / container health checks
  /version  the build's version and git revision, taken from the APP_VERSION and
            APP_REVISION environment variables (set by the Dockerfile from build args
            of the same names); "dev" / "unknown" when unset, as in the Dockerfile

In the container the app is served by gunicorn (see gunicorn.conf.py); ``python app.py``
starts Flask's development server for local use only.
"""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify

APP_NAME = "hello-flask"
DEFAULT_VERSION = "dev"
DEFAULT_REVISION = "unknown"


def create_app() -> Flask:
    """Build the Flask application."""
    app = Flask(__name__)

    @app.get("/")
    def index() -> tuple[str, int, dict[str, str]]:
        return f"Hello from {APP_NAME}!\n", 200, {"Content-Type": "text/plain; charset=utf-8"}

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok")

    @app.get("/version")
    def version() -> Response:
        # Read the environment per request, so what is reported is always what the
        # process was actually started with (and tests can monkeypatch it).
        return jsonify(
            name=APP_NAME,
            version=os.environ.get("APP_VERSION") or DEFAULT_VERSION,
            revision=os.environ.get("APP_REVISION") or DEFAULT_REVISION,
        )

    return app


app = create_app()


if __name__ == "__main__":  # pragma: no cover - local development only
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), debug=False)
