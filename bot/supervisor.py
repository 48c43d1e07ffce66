"""Start the Rasa server, the action server and the gateway; prefix their logs; stop them together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from bot.errors import ConfigError
from bot.settings import ROOT, Settings

COLOURS = {"rasa": "\033[35m", "actions": "\033[36m", "gateway": "\033[32m"}


@dataclass
class Process:
    name: str
    command: List[str]


def sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///"):
        raise ConfigError("TRACKER_STORE_URL must be a sqlite:/// URL for `python -m bot run` (endpoints.yml)")
    return url[len("sqlite:///"):]


def commands(settings: Settings, model: Path, rasa_port: int = 5005, actions_port: int = 5055) -> List[Process]:
    bin_dir = Path(sys.executable).parent
    return [
        # -v: INFO, whatever LOG_LEVEL says. Rasa reads LOG_LEVEL too, and its DEBUG lines carry message
        # text; the gateway's LOG_LEVEL must never turn that on.
        Process("actions", [str(bin_dir / "rasa"), "run", "actions", "-v", "--actions", "actions", "--port",
                            str(actions_port)]),
        Process("rasa", [str(bin_dir / "rasa"), "run", "-v", "--enable-api", "--auth-token", settings.rasa_token.reveal(),
                         "--interface", "127.0.0.1", "--port", str(rasa_port), "--model", str(model),
                         "--endpoints", "endpoints.yml", "--credentials", "credentials.yml", "--cors", "http://localhost"]),
        Process("gateway", [sys.executable, "-m", "uvicorn", "--factory", "bot.app:create_app",
                            "--host", settings.gateway_host, "--port", str(settings.gateway_port),
                            "--no-access-log", "--ws", "wsproto"]),  # websockets 10 (Rasa's pin) is too old for uvicorn
    ]


def environment(settings: Settings, actions_port: int = 5055) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        "ACTION_SERVER_URL": f"http://127.0.0.1:{actions_port}/webhook",
        "GATEWAY_URL": f"http://127.0.0.1:{settings.gateway_port}",
        "NLG_TOKEN": settings.nlg_token.reveal(),
        # Rasa's SQL tracker store (endpoints.yml) is the file TRACKER_STORE_URL names, which the gateway
        # purges and erases from.
        "RASA_TRACKER_DB": env.get("RASA_TRACKER_DB") or sqlite_path(settings.tracker_store_url),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        "SANIC_HOST": "127.0.0.1",  # the action server (rasa_sdk binds 0.0.0.0 otherwise)
        # Rasa's dependencies print pages of deprecation warnings at every start.
        "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::PendingDeprecationWarning",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    })
    return env


def _pump(name: str, stream, colour: bool) -> None:
    prefix = f"{COLOURS.get(name, '')}{name:>8}\033[0m | " if colour else f"{name:>8} | "
    for line in iter(stream.readline, ""):
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def supervise(processes: List[Process], env: Dict[str, str], cwd: Path = ROOT) -> int:
    """Run until Ctrl-C or until one process exits; then stop the others. Returns an exit code."""
    colour = sys.stdout.isatty()
    running: Dict[str, subprocess.Popen] = {}
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in processes:
            proc = subprocess.Popen(p.command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, bufsize=1, start_new_session=True)
            running[p.name] = proc
            threading.Thread(target=_pump, args=(p.name, proc.stdout, colour), daemon=True).start()
        code = 0
        while not stopping.is_set():
            for name, proc in running.items():
                if proc.poll() is not None:
                    print(f"run: {name} exited with code {proc.returncode}; stopping the others", flush=True)
                    code = proc.returncode or 1
                    stopping.set()
                    break
            time.sleep(0.2)
        return code
    finally:
        print("run: stopping…", flush=True)
        for proc in running.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in running.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        print("run: all stopped", flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
