import pytest

from bot.errors import ConfigError
from bot.settings import load_settings, read_env_file

GOOD = {"RASA_TOKEN": "x" * 20, "NLG_TOKEN": "y" * 20, "PSEUDONYM_KEY": "z" * 20, "DATA_KEYS": "k" * 32}


def test_missing_required_setting_names_the_variable(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings({"RASA_TOKEN": "x" * 20}, env_file=tmp_path / "none")
    assert "NLG_TOKEN is required" in str(info.value)
    assert "PSEUDONYM_KEY is required" in str(info.value)


def test_strict_casts(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings({**GOOD, "GATEWAY_PORT": "eighty"}, env_file=tmp_path / "none")
    assert "GATEWAY_PORT" in str(info.value)


def test_short_secret_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings({**GOOD, "RASA_TOKEN": "short"}, env_file=tmp_path / "none")
    assert "RASA_TOKEN" in str(info.value)


def test_secrets_never_print(tmp_path):
    s = load_settings(GOOD, env_file=tmp_path / "none")
    shown = f"{s.rasa_token} {s.rasa_token!s} {s.rasa_token!r} {s.describe()} {s!r}"
    assert "x" * 20 not in shown
    assert s.rasa_token.reveal() == "x" * 20


def test_environment_beats_env_file_beats_default(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text('GATEWAY_PORT=9001\nLOG_LEVEL="DEBUG"\n# comment\n\n')
    s = load_settings({**GOOD, "GATEWAY_PORT": "9002"}, env_file=env_file)
    assert s.gateway_port == 9002 and s.log_level == "DEBUG" and s.default_language == "en"


def test_malformed_env_file_line(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("JUSTAWORD\n")
    with pytest.raises(ConfigError) as info:
        read_env_file(env_file)
    assert ":1:" in str(info.value)


def test_channels_are_off_unless_configured(tmp_path):
    s = load_settings(GOOD, env_file=tmp_path / "none")
    assert not s.telegram_enabled and not s.whatsapp_enabled and s.telegram_webhook_url is None


def test_channel_urls_and_secrets_are_checked(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings({**GOOD, "TELEGRAM_API_BASE_URL": "api.telegram.org", "TELEGRAM_WEBHOOK_SECRET": "short"},
                      env_file=tmp_path / "none")
    assert "TELEGRAM_API_BASE_URL" in str(info.value) and "TELEGRAM_WEBHOOK_SECRET" in str(info.value)


def test_whatsapp_without_its_app_secret_does_not_start(tmp_path):
    from bot.app import create_app

    s = load_settings({**GOOD, "DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}",
                       "WHATSAPP_ACCESS_TOKEN": "a" * 20, "WHATSAPP_PHONE_NUMBER_ID": "123"},
                      env_file=tmp_path / "none")
    assert s.whatsapp_enabled
    with pytest.raises(ConfigError) as info:
        create_app(s)
    assert "WHATSAPP_APP_SECRET" in str(info.value)
