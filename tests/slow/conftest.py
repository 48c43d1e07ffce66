"""Slow tests share one trained model (trained once, reused while the training data is unchanged)
and, for end-to-end tests, one set of real processes: Rasa, the action server and the gateway."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bot.settings import ROOT, load_settings
from bot.supervisor import commands, environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def trained_model() -> Path:
    from bot.training import train

    return train()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TELEGRAM_SECRET = "e2e-telegram-secret-" + secrets.token_hex(8)
WHATSAPP_APP_SECRET = "e2e-whatsapp-app-secret-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def platforms():
    """The fake Telegram Bot API and WhatsApp Graph API the gateway talks to."""
    from tests.fakes.platforms import FakePlatforms

    fake = FakePlatforms().start()
    yield fake
    fake.stop()


class Servers(dict):
    """The running processes; `restart("rasa")` stops one and starts it again (failure tests)."""

    def stop(self, name: str) -> None:
        proc = self["procs"][name]
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)

    def start(self, name: str) -> None:
        command = self["commands"][name]
        self["procs"][name] = subprocess.Popen(command, cwd=ROOT, env=self["process_env"], stdout=self["logs"][name],
                                               stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self['url']}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("servers not ready again")


@pytest.fixture(scope="session")
def servers(trained_model, tmp_path_factory, platforms):
    """Start the three processes on free ports with their own databases; yield the gateway URL."""
    work = tmp_path_factory.mktemp("servers")
    rasa_port, actions_port, gateway_port = _free_port(), _free_port(), _free_port()
    env_vars = {
        "DATABASE_URL": f"sqlite:///{work / 'gateway.db'}",
        "RASA_URL": f"http://127.0.0.1:{rasa_port}",
        "RASA_TOKEN": "e2e-rasa-token-" + secrets.token_hex(8),
        "NLG_TOKEN": "e2e-nlg-token-" + secrets.token_hex(8),
        "PSEUDONYM_KEY": "e2e-pseudonym-key-" + secrets.token_hex(8),
        "GATEWAY_PORT": str(gateway_port),
        "RASA_TRACKER_DB": str(work / "tracker.db"),
        "TRACKER_STORE_URL": f"sqlite:///{work / 'tracker.db'}",
        "DATA_KEYS": "e2e-data-key-" + secrets.token_hex(16),
        "TELEGRAM_BOT_TOKEN": "424242:e2e-telegram-bot-token",
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "TELEGRAM_WEBHOOK_URL": "https://crossroads.example.org/telegram/webhook",
        "TELEGRAM_API_BASE_URL": platforms.url,
        "WHATSAPP_ACCESS_TOKEN": "e2e-whatsapp-access-token-" + secrets.token_hex(8),
        "WHATSAPP_APP_SECRET": WHATSAPP_APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": "e2e-whatsapp-verify-" + secrets.token_hex(8),
        "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
        "WHATSAPP_API_BASE_URL": platforms.url,
        # Counsellors "always at work" here, so answers do not depend on the day the tests run.
        "COUNSELLOR_HOURS": "mon-sun 00:00-23:59",
        "COUNSELLOR_TIMEZONE": "UTC",
        # Every gateway log level is on in these tests: test_privacy_e2e scans the logs for personal data.
        "LOG_LEVEL": "DEBUG",
    }
    settings = load_settings(env_vars, env_file=work / "none.env")
    from bot.db import Database
    from bot.services import import_services

    seed = Database(settings.database_url, keys=settings.data_keys)
    seed.upgrade()
    import_services(seed)
    seed.dispose()
    env = environment(settings, actions_port=actions_port)
    env.update(env_vars)
    logs = {}
    procs = []
    running = Servers(procs={}, commands={}, logs=logs, process_env=env)
    for p in commands(settings, trained_model, rasa_port=rasa_port, actions_port=actions_port):
        logs[p.name] = open(work / f"{p.name}.log", "w")
        running["commands"][p.name] = p.command
        running.start(p.name)
        procs.append(running["procs"][p.name])
    base = f"http://127.0.0.1:{gateway_port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            dead = [p.args[0] for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"process exited early: {dead}; logs in {work}")
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200 and \
                        httpx.get(f"http://127.0.0.1:{actions_port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"servers not ready after 240 s; logs in {work}")
            time.sleep(1)
        running.update(url=base, settings=settings, work=work, env=env_vars, rasa_port=rasa_port)
        yield running
    finally:
        procs = list(running["procs"].values())
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 15)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        for handle in logs.values():
            handle.close()
