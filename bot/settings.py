"""All settings in one place.

Order of precedence: the process environment, then the `.env` file in the project root, then the
default below. A required setting without a value fails at start with the name of the variable.
Secrets print as ``****``. Every variable is documented in README.md ("Configuration").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional

from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def read_env_file(path: Path) -> Dict[str, str]:
    """Parse a simple KEY=VALUE file (comments and blank lines ignored, optional quotes)."""
    values: Dict[str, str] = {}
    if not path.exists():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


class Secret(str):
    """A string that does not show itself in repr/str output meant for logs."""

    def __repr__(self) -> str:
        return "'****'"

    def reveal(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return "****"

    def __format__(self, spec: str) -> str:
        return "****"


def _secret(value: str) -> Secret:
    if len(value) < 16:
        raise ValueError("must be at least 16 characters")
    return Secret(value)


def _setting(default: Optional[str], cast: Callable[[str], object] = str, *, help: str,
             optional: bool = False) -> object:
    return field(default=None, metadata={"default": default, "cast": cast, "help": help, "optional": optional})


def _keys(value: str) -> Secret:
    """DATA_KEYS: one or more secrets of 32+ characters, comma-separated, newest first."""
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise ValueError("needs at least one key")
    if any(len(k) < 32 for k in keys):
        raise ValueError("every key must be at least 32 characters")
    return Secret(",".join(keys))


def _positive(cast: Callable[[str], object]) -> Callable[[str], object]:
    def check(value: str) -> object:
        number = cast(value)
        if number <= 0:  # type: ignore[operator]
            raise ValueError("must be greater than 0")
        return number
    return check


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"one of {', '.join(allowed)}")
        return value

    return check


def _url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http(s) URL")
    return value.rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Gateway settings; build with :func:`load_settings`."""

    database_url: str = _setting(
        f"sqlite:///{ROOT / 'var' / 'crossroads.db'}", help="SQLAlchemy URL of the gateway database"
    )
    rasa_url: str = _setting("http://127.0.0.1:5005", help="Base URL of the Rasa server; several replicas: "
                                                         "comma-separated URLs (messages go round robin, "
                                                         "skipping replicas that are down)")
    rasa_token: Secret = _setting(None, _secret, help="Token of Rasa's HTTP API (--auth-token)")
    nlg_token: Secret = _setting(None, _secret, help="Token Rasa sends to the gateway's /nlg endpoint")
    pseudonym_key: Secret = _setting(None, _secret, help="Key of the keyed hash that makes sender ids")
    data_keys: Secret = _setting(None, _keys, help="Keys that encrypt addresses and message text at rest: "
                                 "32+ characters each, comma-separated, newest first (docs/security.md)")
    tracker_store_url: str = _setting(f"sqlite:///{ROOT / 'var' / 'rasa-tracker.db'}",
                                      help="SQLAlchemy URL of Rasa's SQL tracker store (purge and erasure)")
    # Privacy (docs/privacy.md)
    retention_days: float = _setting("30", _positive(float), help="Days a kept conversation stays after its "
                                     "last activity (open counsellor cases stay until resolved)")
    minimal_idle_minutes: float = _setting("30", _positive(float), help="Minutes without messages after which "
                                           "a conversation whose storage was not agreed is erased")
    review_confidence: float = _setting("0.6", float, help="Messages classified below this confidence (or as "
                                        "nlu_fallback) go to the maintainers' review queue")
    purge_interval_minutes: float = _setting("10", _positive(float), help="How often the worker runs the "
                                             "retention purge")
    redis_url: Optional[str] = _setting(None, optional=True, help="Redis of Rasa's lock store (production "
                                        "profile), e.g. redis://127.0.0.1:6379/0")
    event_broker_url: Optional[str] = _setting(None, optional=True, help="RabbitMQ for Rasa's analytics events "
                                               "(production profile), e.g. amqp://guest:guest@127.0.0.1:5672/")
    rasa_replicas: int = _setting("2", _positive(int), help="Rasa server processes the production profile starts")
    rasa_base_port: int = _setting("5005", int, help="Port of the first Rasa replica of the production profile "
                                                     "(the next ones count up)")
    actions_port: int = _setting("5055", int, help="Port of the action server")
    action_workers: int = _setting("2", _positive(int), help="Sanic workers of the action server (production profile)")
    log_format: str = _setting("text", _choice("text", "json"), help="Log lines as text, or one JSON object "
                                                                    "per line (production profile)")
    metrics_token: Optional[Secret] = _setting(None, _secret, optional=True,
                                               help="If set, GET /metrics needs 'Authorization: Bearer <token>'")
    gateway_host: str = _setting("127.0.0.1", help="Address the gateway listens on")
    gateway_port: int = _setting("8000", int, help="Port the gateway listens on")
    default_language: str = _setting("en", help="Language used when none is known")
    max_message_chars: int = _setting("2000", int, help="Longest user message accepted")
    rasa_timeout_seconds: float = _setting("30", float, help="How long to wait for Rasa's answer")
    log_level: str = _setting("INFO", help="Log level of the gateway")
    content_dir: Path = _setting(str(ROOT / "data" / "content"), Path, help="Folder of content files")
    user_messages_per_minute: int = _setting("20", int, help="Messages one person may send per minute")
    webchat_wait_seconds: float = _setting("25", float, help="How long a web chat request waits for its answer")
    outbox_give_up_hours: float = _setting("24", float, help="How long a reply is retried before it is given up")
    # Counsellors
    counsellor_hours: str = _setting("mon-fri 09:00-17:00", help="When counsellors work, e.g. 'mon-fri 09:00-17:00; sat 10:00-14:00'")
    counsellor_timezone: str = _setting("Europe/Brussels", help="Time zone of COUNSELLOR_HOURS (IANA name)")
    handoff_default_wait_minutes: int = _setting("15", int, help="Expected wait told to people before there is history")
    handoff_language_window_minutes: float = _setting(
        "5", float, help="How long a non-urgent case is offered only to counsellors who speak its language")
    console_session_hours: float = _setting("8", float, help="How long a console login lasts")
    console_secure_cookie: bool = _setting("true", _bool, help="Mark the console cookie Secure (https only)")
    # Telegram (optional: the channel is on when TELEGRAM_BOT_TOKEN is set)
    telegram_bot_token: Optional[Secret] = _setting(None, _secret, optional=True,
                                                    help="Token from @BotFather; empty = Telegram off")
    telegram_webhook_secret: Optional[Secret] = _setting(
        None, _secret, optional=True, help="Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token")
    telegram_webhook_url: Optional[str] = _setting(
        None, _url, optional=True, help="Public https URL of /telegram/webhook; empty = polling")
    telegram_api_base_url: str = _setting("https://api.telegram.org", _url, help="Telegram Bot API base URL")
    # WhatsApp Cloud API (optional: on when WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID are set)
    whatsapp_access_token: Optional[Secret] = _setting(None, _secret, optional=True,
                                                       help="Graph API access token; empty = WhatsApp off")
    whatsapp_app_secret: Optional[Secret] = _setting(None, _secret, optional=True,
                                                     help="App secret that signs webhooks (X-Hub-Signature-256)")
    whatsapp_verify_token: Optional[Secret] = _setting(None, _secret, optional=True,
                                                       help="Token for the webhook verification challenge")
    whatsapp_phone_number_id: Optional[str] = _setting(None, optional=True, help="Business phone number id")
    whatsapp_api_base_url: str = _setting("https://graph.facebook.com", _url, help="Graph API base URL")
    whatsapp_api_version: str = _setting("v21.0", help="Graph API version in the messages URL")
    whatsapp_template_name: Optional[str] = _setting(
        None, optional=True, help="Approved template sent outside the 24-hour window")

    def describe(self) -> Dict[str, str]:
        """Each setting with secrets masked (safe to print)."""
        return {f.name: repr(getattr(self, f.name)) if isinstance(getattr(self, f.name), Secret)
                else str(getattr(self, f.name)) for f in fields(self)}

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None

    @property
    def whatsapp_enabled(self) -> bool:
        return self.whatsapp_access_token is not None and bool(self.whatsapp_phone_number_id)


ENV_NAMES = {f.name: f.name.upper() for f in fields(Settings)}


def load_settings(
    environ: Optional[Mapping[str, str]] = None, env_file: Optional[Path] = None
) -> Settings:
    """Read settings from the environment, then `.env`, then defaults; fail loudly when wrong."""
    environ = os.environ if environ is None else environ
    file_values = read_env_file(env_file if env_file is not None else ROOT / ".env")
    values = {}
    problems = []
    for f in fields(Settings):
        name = ENV_NAMES[f.name]
        raw = environ.get(name, file_values.get(name, f.metadata["default"]))
        if raw is None or raw == "":
            if f.metadata["optional"]:
                values[f.name] = None
                continue
            problems.append(f"{name} is required ({f.metadata['help']})")
            continue
        try:
            values[f.name] = f.metadata["cast"](raw)
        except (ValueError, TypeError) as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems))
    return Settings(**values)
