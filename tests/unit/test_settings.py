"""Settings: bad values fail in one line naming the variable; defaults give the embedded mode;
every setting is described, and docs/settings.md and `conduit settings` show them all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conduit.infra.settings import GROUPS, SettingsError, describe_settings, load_settings
from tests import support

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "scripts" / "generate_settings_doc.py"
DOC = ROOT / "docs" / "settings.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CONDUIT_ setting from the outside; the working directory is the test's own."""
    for name in list(os.environ):
        if name.startswith("CONDUIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


class TestBadValues:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("CONDUIT_DATABASE_POOL_SIZE", "abc"),
            ("CONDUIT_DATABASE_POOL_SIZE", "0"),
            ("CONDUIT_DATABASE_URL", "mysql://x"),
            ("CONDUIT_REDIS_URL", "http://x"),
            ("CONDUIT_BROKER_URL", "http://x"),
            ("CONDUIT_LOG_LEVEL", "LOUD"),
            ("CONDUIT_HTTP_PORT", "70000"),
            ("CONDUIT_DATABASE_ECHO", "maybe"),
            ("CONDUIT_TASKS_RELAY_INTERVAL", "-1"),
        ],
    )
    def test_bad_value_is_one_line_naming_the_variable_and_the_value(
        self, monkeypatch: pytest.MonkeyPatch, name: str, value: str
    ) -> None:
        message = load_error(monkeypatch, **{name: value})
        assert "\n" not in message
        assert message.startswith(f"{name}: ")
        assert repr(value) in message

    def test_several_workers_need_a_broker(self, monkeypatch: pytest.MonkeyPatch) -> None:
        message = load_error(monkeypatch, CONDUIT_HTTP_WORKERS="2")
        assert "\n" not in message
        assert message.startswith("CONDUIT_HTTP_WORKERS: ")
        assert "CONDUIT_BROKER_URL" in message

    def test_hard_time_limit_below_the_soft_one_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        message = load_error(
            monkeypatch, CONDUIT_TASKS_SOFT_TIME_LIMIT="60", CONDUIT_TASKS_TIME_LIMIT="30"
        )
        assert "\n" not in message
        assert message.startswith("CONDUIT_TASKS_TIME_LIMIT: ")

    def test_a_visibility_timeout_shorter_than_a_run_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The broker would hand a live run (up to its time limit + 60 s) to a second worker."""
        message = load_error(
            monkeypatch,
            CONDUIT_BROKER_URL="redis://127.0.0.1:6379/1",
            CONDUIT_BROKER_VISIBILITY_TIMEOUT="650",
            CONDUIT_RUNS_MAX_SECONDS="600",
        )
        assert "\n" not in message
        assert message.startswith("CONDUIT_BROKER_VISIBILITY_TIMEOUT: ")
        assert "CONDUIT_RUNS_MAX_SECONDS" in message

    def test_list_setting_that_is_not_json_is_one_line(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        message = load_error(monkeypatch, CONDUIT_HTTP_CORS_ORIGINS="https://a.example")
        assert message.startswith("CONDUIT_HTTP_CORS_ORIGINS: ")

    def test_log_level_is_case_insensitive(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONDUIT_LOG_LEVEL", "debug")
        assert load_settings().log.level == "DEBUG"


class TestModesAndUrls:
    def test_defaults_give_the_embedded_mode_on_sqlite_in_the_data_dir(
        self, clean_env: Path
    ) -> None:
        settings = load_settings()
        assert settings.mode == "embedded"
        assert settings.redis.url is None
        assert settings.broker.url is None
        expected = (clean_env / ".conduit" / "conduit.db").resolve()
        assert settings.database_url == f"sqlite:///{expected}"

    def test_sqlite_database_follows_the_data_dir(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / "elsewhere"))
        settings = load_settings()
        assert settings.database_url == f"sqlite:///{(tmp_path / 'elsewhere' / 'conduit.db')}"

    def test_broker_url_gives_the_distributed_mode(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONDUIT_BROKER_URL", "redis://127.0.0.1:6379/3")
        settings = load_settings()
        assert settings.mode == "distributed"
        assert settings.broker.url == "redis://127.0.0.1:6379/3"

    def test_several_workers_are_allowed_in_the_distributed_mode(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CONDUIT_BROKER_URL", "redis://127.0.0.1:6379/3")
        monkeypatch.setenv("CONDUIT_HTTP_WORKERS", "4")
        assert load_settings().http.workers == 4

    @pytest.mark.parametrize(
        "url",
        ["postgres://u:p@db:5432/conduit", "postgresql://u:p@db:5432/conduit"],
    )
    def test_postgres_urls_are_normalised_to_psycopg(
        self, monkeypatch: pytest.MonkeyPatch, url: str
    ) -> None:
        monkeypatch.setenv("CONDUIT_DATABASE_URL", url)
        assert load_settings().database_url == "postgresql+psycopg://u:p@db:5432/conduit"

    def test_explicit_psycopg_and_sqlite_urls_are_kept(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for url in ("postgresql+psycopg://u@db/conduit", "sqlite:////var/lib/conduit.db"):
            monkeypatch.setenv("CONDUIT_DATABASE_URL", url)
            assert load_settings().database_url == url

    @pytest.mark.parametrize(
        "name", ["CONDUIT_DATABASE_URL", "CONDUIT_REDIS_URL", "CONDUIT_BROKER_URL"]
    )
    def test_empty_url_means_unset(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        monkeypatch.setenv(name, "")
        settings = load_settings()
        assert settings.mode == "embedded"
        assert settings.database_url.startswith("sqlite:///")
        assert settings.redis.url is None

    def test_generated_secret_key_is_kept_in_the_data_dir(self, clean_env: Path) -> None:
        first = load_settings().secret_key()
        assert len(first) >= 32
        assert load_settings().secret_key() == first
        assert (clean_env / ".conduit" / "secret_key").read_text() == first


class TestDescriptions:
    def test_every_field_of_every_group_has_a_description(self) -> None:
        undescribed = [
            f"{group.__name__}.{name}"
            for group in GROUPS.values()
            for name, info in group.model_fields.items()
            if not (info.description or "").strip()
        ]
        assert undescribed == []

    def test_every_field_is_described_once_under_its_variable(self) -> None:
        rows = describe_settings()
        names = [row[0] for row in rows]
        assert len(names) == len(set(names))
        expected = {
            f"{group.model_config['env_prefix']}{name}".upper()
            for group in GROUPS.values()
            for name in group.model_fields
        }
        assert set(names) == expected

    def test_settings_doc_matches_the_generator(self) -> None:
        result = subprocess.run(
            [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (
            "docs/settings.md is stale; run `python scripts/generate_settings_doc.py`\n"
            + result.stderr
        )

    def test_settings_doc_names_every_variable(self) -> None:
        text = DOC.read_text(encoding="utf-8")
        missing = [row[0] for row in describe_settings() if f"`{row[0]}`" not in text]
        assert missing == []

    def test_generator_check_fails_on_a_stale_doc(self, tmp_path: Path) -> None:
        stale = tmp_path / "settings.md"
        stale.write_text(DOC.read_text(encoding="utf-8").replace("CONDUIT_HTTP_PORT", "X"))
        result = subprocess.run(
            [sys.executable, str(GENERATOR), "--check", "--output", str(stale)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert "out of date" in result.stderr

    def test_cli_settings_prints_every_variable(self, tmp_path: Path) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("CONDUIT_")}
        result = subprocess.run(
            [support.CONDUIT, "settings"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        missing = [row[0] for row in describe_settings() if row[0] not in result.stdout]
        assert missing == []
