"""[tool.shipit] / shipit.toml loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipit.config import load_config
from shipit.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_repo_config_builds_the_sample_app() -> None:
    config = load_config(REPO_ROOT)
    assert config.name == "hello-flask"
    assert config.context == REPO_ROOT / "sample_app"


def test_no_config_is_empty(tmp_path: Path) -> None:
    assert load_config(tmp_path).name is None


def test_shipit_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.shipit]\nname = "from-pyproject"\n')
    (tmp_path / "shipit.toml").write_text('name = "from-shipit"\n')
    assert load_config(tmp_path).name == "from-shipit"


def test_config_found_from_a_subdirectory(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.shipit]\nname = "x"\ncontext = "app"\ndockerfile = "app/Dockerfile.prod"\n'
        '[tool.shipit.build-args]\nPYTHON_IMAGE = "base:1"\n'
        '[tool.shipit.registry]\nregistries = ["ecr"]\nregion = "eu-west-1"\n'
    )
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    config = load_config(sub)
    assert config.context == tmp_path / "app"
    assert config.dockerfile == tmp_path / "app" / "Dockerfile.prod"
    assert config.build_args == {"PYTHON_IMAGE": "base:1"}
    assert config.registry == {"registries": ["ecr"], "region": "eu-west-1"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[tool.shipit]\nname = \n", "malformed pyproject.toml"),
        ('[tool.shipit]\nnmae = "x"\n', "unknown key 'nmae'"),
        ("[tool.shipit]\nname = 3\n", "'name' must be a non-empty string"),
        ('[tool.shipit]\nlatest = "yes"\n', "'latest' must be true or false"),
        ('[tool.shipit]\nbuild-args = ["A=1"]\n', "must be a table"),
        ("[tool.shipit.registry]\nregion = 1\n", "'region' must be a string"),
        ("[tool.shipit.registry]\nbogus = 1\n", "unknown key 'bogus'"),
    ],
)
def test_malformed_config_is_a_config_error(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(body)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(tmp_path)
    assert info.value.exit_code == 2
