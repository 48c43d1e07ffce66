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


@pytest.fixture(scope="session")
def servers(trained_model, tmp_path_factory):
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
    }
    settings = load_settings(env_vars, env_file=work / "none.env")
    from bot.db import Database
    from bot.services import import_services

    seed = Database(settings.database_url)
    seed.upgrade()
    import_services(seed)
    seed.dispose()
    env = environment(settings, actions_port=actions_port)
    env.update(env_vars)
    logs = {}
    procs = []
    for p in commands(settings, trained_model, rasa_port=rasa_port, actions_port=actions_port):
        logs[p.name] = open(work / f"{p.name}.log", "w")
        procs.append(subprocess.Popen(p.command, cwd=ROOT, env=env, stdout=logs[p.name], stderr=subprocess.STDOUT,
                                      start_new_session=True))
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
        yield {"url": base, "settings": settings, "work": work, "logs": logs, "env": env_vars}
    finally:
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
