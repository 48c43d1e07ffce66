from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from bot.app import create_app
from bot.content import ContentStore
from bot.conversation import ConversationService
from bot.db import Database
from bot.rasa_client import RasaClient
from bot.settings import ROOT, load_settings
from tests.fakes.platforms import FakePlatforms

LAUNCH_LANGUAGES = ["en", "fr", "ar", "es", "fa", "ti", "ps", "so", "ur", "bn", "ru", "ka"]
DATA_KEY = "data-key-for-tests-0123456789abcdefghijklmnop"


def base_env(tmp_path: Path) -> Dict[str, str]:
    """The settings every test gateway needs: its own databases and test secrets."""
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        "RASA_TOKEN": "rasa-token-for-tests-0123456789",
        "NLG_TOKEN": "nlg-token-for-tests-0123456789",
        "PSEUDONYM_KEY": "pseudonym-key-for-tests-0123456789",
        "DATA_KEYS": DATA_KEY,
        "TRACKER_STORE_URL": f"sqlite:///{tmp_path / 'tracker.db'}",
    }


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(base_env(tmp_path), env_file=tmp_path / "absent.env")


@pytest.fixture
def db(settings):
    database = Database(settings.database_url, keys=settings.data_keys)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def content() -> ContentStore:
    return ContentStore(ROOT / "data" / "content")


@pytest.fixture(scope="session")
def domain() -> Dict:
    return yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))


class FakeRasa:
    """Stands in for Rasa's REST channel: records what it receives, answers with a handler."""

    def __init__(self) -> None:
        self.received: List[Dict] = []
        self.down = False
        self.answer: Callable[[Dict], List[Dict]] = lambda body: [{"text": f"echo:{body['message']}"}]

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("down", request=request)
        if request.url.path == "/status":
            return httpx.Response(200, json={"model_file": "models/fake.tar.gz"})
        body = json.loads(request.content)
        self.received.append(body)
        return httpx.Response(200, json=self.answer(body))


@pytest.fixture
def fake_rasa() -> FakeRasa:
    return FakeRasa()


@pytest.fixture
def rasa_client(settings, fake_rasa):
    return RasaClient(settings.rasa_url, settings.rasa_token, transport=httpx.MockTransport(fake_rasa.handler))


@pytest.fixture
def service(settings, db, content, rasa_client):
    detections = {}

    def detect(text: str):
        return detections.get(text)

    svc = ConversationService(settings, db, content, rasa_client, detect=detect)
    svc.test_detections = detections  # tests set what the detector "finds"
    return svc


# -- channels: a fake Telegram Bot API and WhatsApp Graph API, and a gateway wired to them -----------
SECRET = "telegram-webhook-secret-0123456789"
APP_SECRET = "whatsapp-app-secret-0123456789"
VERIFY = "whatsapp-verify-token-0123456789"
TG = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


@pytest.fixture(scope="session")
def platforms():
    fake = FakePlatforms().start()
    yield fake
    fake.stop()


@pytest.fixture
def channel_settings(tmp_path, platforms):
    env = {
        **base_env(tmp_path),
        "TELEGRAM_BOT_TOKEN": "123456:telegram-token-for-tests",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook",
        "TELEGRAM_API_BASE_URL": platforms.url,
        "WHATSAPP_ACCESS_TOKEN": "whatsapp-access-token-0123456789",
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY,
        "WHATSAPP_PHONE_NUMBER_ID": "123456789",
        "WHATSAPP_API_BASE_URL": platforms.url,
        "WHATSAPP_TEMPLATE_NAME": "crossroads_reply_waiting",
    }
    return load_settings(env, env_file=tmp_path / "absent.env")


@pytest.fixture
def gateway(channel_settings, rasa_client, platforms):
    platforms.calls.clear()
    platforms.failures = {"telegram": [], "whatsapp": []}
    database = Database(channel_settings.database_url, keys=channel_settings.data_keys)
    with TestClient(create_app(channel_settings, rasa=rasa_client, db=database), base_url="https://testserver") as client:
        client.db = database
        yield client
    database.dispose()


