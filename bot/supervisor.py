"""Start the Rasa server(s), the action server and the gateway; prefix their logs; stop them together.

Development (`make run`): one of each; when one exits, everything stops. Production profile
(`make run-prod`, bot/profiles.py): N Rasa replicas, action server workers, JSON log lines, and a
process that exits is restarted (after 1 s, at most 5 times a minute) while the others go on serving.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from dataclasses import field

from bot.errors import ConfigError
from bot.settings import ROOT, Settings

COLOURS = {"rasa": "\033[35m", "actions": "\033[36m", "gateway": "\033[32m"}


@dataclass
class Process:
    name: str
    command: List[str]
    env: Dict[str, str] = field(default_factory=dict)  # on top of the shared environment


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


def prod_commands(settings: Settings, model: Path) -> List[Process]:
    """The production profile: `settings.rasa_replicas` Rasa servers on endpoints.prod.yml."""
    actions_port = settings.actions_port
    bin_dir = Path(sys.executable).parent
    processes = [Process("actions", [str(bin_dir / "rasa"), "run", "actions", "-v", "--actions", "actions",
                                     "--port", str(actions_port)],
                         env={"ACTION_SERVER_SANIC_WORKERS": str(settings.action_workers)})]  # rasa_sdk's own variable
    for index in range(settings.rasa_replicas):
        processes.append(Process(
            f"rasa-{index + 1}",
            [str(bin_dir / "rasa"), "run", "-v", "--enable-api", "--auth-token", settings.rasa_token.reveal(),
             "--interface", "127.0.0.1", "--port", str(settings.rasa_base_port + index), "--model", str(model),
             "--endpoints", "endpoints.prod.yml", "--credentials", "credentials.yml"],
            env={"SANIC_WORKERS": "1"}))
    processes.append(Process("gateway", [sys.executable, "-m", "uvicorn", "--factory", "bot.app:create_app",
                                         "--host", settings.gateway_host, "--port", str(settings.gateway_port),
                                         "--no-access-log", "--ws", "wsproto"]))
    return processes


def prod_environment(settings: Settings) -> Dict[str, str]:
    from bot.profiles import rasa_urls, store_environment

    env = environment(settings, settings.actions_port)
    env.pop("RASA_TRACKER_DB", None)
    env.update(store_environment(settings))
    env.update({
        "RASA_URL": ",".join(rasa_urls(settings.rasa_replicas, settings.rasa_base_port)),
        # A replica that dies holding a conversation's lock blocks that conversation at most this long.
        "TICKET_LOCK_LIFETIME": env.get("TICKET_LOCK_LIFETIME") or "15",
    })
    return env


def environment(settings: Settings, actions_port: int = 5055) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        "ACTION_SERVER_URL": f"http://127.0.0.1:{actions_port}/webhook",
        "GATEWAY_URL": f"http://127.0.0.1:{settings.gateway_port}",
        "NLG_TOKEN": settings.nlg_token.reveal(),
        # Rasa renders answers from the gateway's content files (bot.rasa_nlg.ContentNLG), set in .env or not.
        "CONTENT_DIR": str(settings.content_dir),
        # Rasa's SQL tracker store (endpoints.yml) is the file TRACKER_STORE_URL names, which the gateway
        # purges and erases from.
        "RASA_TRACKER_DB": env.get("RASA_TRACKER_DB") or (sqlite_path(settings.tracker_store_url)
                                                          if settings.tracker_store_url.startswith("sqlite") else ""),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        "SANIC_HOST": "127.0.0.1",  # the action server (rasa_sdk binds 0.0.0.0 otherwise)
        # Rasa's dependencies print pages of deprecation warnings at every start.
        "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::PendingDeprecationWarning",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    })
    return env


def json_line(name: str, line: str) -> str:
    """One JSON object per line: a child's own JSON line gets the process name, other lines are wrapped."""
    line = line.rstrip("\n")
    try:
        record = json.loads(line) if line.startswith("{") else None
    except ValueError:
        record = None
    if not isinstance(record, dict):
        record = {"ts": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), "message": line}
    record["process"] = name
    return json.dumps(record, ensure_ascii=False) + "\n"


def _pump(name: str, stream, colour: bool, as_json: bool = False) -> None:
    prefix = f"{COLOURS.get(name, '')}{name:>8}\033[0m | " if colour else f"{name:>8} | "
    for line in iter(stream.readline, ""):
        sys.stdout.write(json_line(name, line) if as_json else prefix + line)
        sys.stdout.flush()


def supervise(processes: List[Process], env: Dict[str, str], cwd: Path = ROOT, restart: bool = False,
              as_json: bool = False) -> int:
    """Run until Ctrl-C or until one process exits; then stop the others. Returns an exit code.

    With `restart`, a process that exits is started again (after 1 s; more than 5 exits in a minute stops
    everything)."""
    colour = sys.stdout.isatty() and not as_json
    running: Dict[str, subprocess.Popen] = {}
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        by_name = {p.name: p for p in processes}
        exits: Dict[str, List[float]] = {p.name: [] for p in processes}

        def start(p: Process) -> None:
            proc = subprocess.Popen(p.command, cwd=cwd, env={**env, **p.env}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
            running[p.name] = proc
            threading.Thread(target=_pump, args=(p.name, proc.stdout, colour, as_json), daemon=True).start()

        def say(text: str) -> None:
            print(json_line("supervisor", text) if as_json else f"run: {text}", end="" if as_json else "\n",
                  flush=True)

        for p in processes:
            start(p)
        code = 0
        while not stopping.is_set():
            for name, proc in list(running.items()):
                if proc.poll() is None:
                    continue
                now = time.monotonic()
                exits[name] = [t for t in exits[name] if now - t < 60] + [now]
                if restart and len(exits[name]) <= 5 and not stopping.is_set():
                    say(f"{name} exited with code {proc.returncode}; restarting it in 1 s")
                    time.sleep(1)
                    start(by_name[name])
                    continue
                say(f"{name} exited with code {proc.returncode}; stopping the others")
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
