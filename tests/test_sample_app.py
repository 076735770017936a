"""Unit tests for the sample Flask app in sample_app/ (no Docker needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

APP_PATH = Path(__file__).resolve().parent.parent / "sample_app" / "app.py"


def _load_sample_app() -> ModuleType:
    # sample_app/ is not an installed package: load app.py by path, under a name that
    # cannot clash with any other module called "app".
    spec = importlib.util.spec_from_file_location("shipit_sample_app", APP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sample_app = _load_sample_app()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("APP_VERSION", raising=False)
    monkeypatch.delenv("APP_REVISION", raising=False)
    app = sample_app.create_app()
    app.config.update(TESTING=True)
    with app.test_client() as client:
        yield client


def test_module_level_app_exists() -> None:
    rules = {rule.rule for rule in sample_app.app.url_map.iter_rules()}
    assert {"/", "/health", "/version"} <= rules


def test_index_greets(client) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp.get_data(as_text=True).strip() == "Hello from hello-flask!"
    assert resp.mimetype == "text/plain"


def test_health_ok(client) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.is_json
    assert resp.get_json() == {"status": "ok"}


def test_version_defaults_when_unset(client) -> None:
    resp = client.get("/version")
    assert resp.status_code == 200
    assert resp.get_json() == {"name": "hello-flask", "version": "dev", "revision": "unknown"}


def test_version_reads_environment(client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_VERSION", "1.2.3")
    monkeypatch.setenv("APP_REVISION", "abc1234")
    data = client.get("/version").get_json()
    assert data["version"] == "1.2.3"
    assert data["revision"] == "abc1234"

    # Read per request, not frozen at import/startup.
    monkeypatch.setenv("APP_VERSION", "2.0.0")
    assert client.get("/version").get_json()["version"] == "2.0.0"


def test_version_empty_values_fall_back_to_defaults(client, monkeypatch) -> None:
    monkeypatch.setenv("APP_VERSION", "")
    monkeypatch.setenv("APP_REVISION", "")
    data = client.get("/version").get_json()
    assert (data["version"], data["revision"]) == ("dev", "unknown")


@pytest.mark.parametrize("path", ["/nope", "/health/extra", "/versions"])
def test_unknown_path_is_404(client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_post_to_health_not_allowed(client) -> None:
    assert client.post("/health").status_code == 405
