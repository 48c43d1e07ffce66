"""Load a model into running Rasa servers without stopping them, and go back to the previous one.

`deploy` asks each Rasa server in turn (`PUT /model`, Rasa's HTTP API) to load the model file, then
waits until its `/status` names that file. One server at a time: with several replicas, the others
keep answering. With one server, messages that arrive while it loads simply wait: the gateway stores
every message before Rasa sees it and retries when Rasa is slow or away (decision 0006), so nothing
is lost and nothing is answered twice. Every deployment is recorded in var/deployments.json;
`rollback` loads the one before the current.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import httpx

from bot.errors import CrossroadsError
from bot.settings import ROOT, Secret

HISTORY = ROOT / "var" / "deployments.json"


class DeployError(CrossroadsError):
    pass


@dataclass
class Deployed:
    model: Path
    servers: List[str]
    seconds: float


def history(path: Path = HISTORY) -> List[dict]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def _record(model: Path, servers: Sequence[str], action: str, path: Path = HISTORY) -> None:
    entries = history(path)
    entries.append({"model": str(model), "servers": list(servers), "action": action,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")


def loaded_model(url: str, token: Secret, timeout: float = 5.0) -> Optional[str]:
    try:
        response = httpx.get(f"{url}/status", params={"token": token.reveal()}, timeout=timeout)
    except httpx.HTTPError:
        return None
    return response.json().get("model_file") if response.status_code == 200 else None


def deploy(model: Path, urls: Sequence[str], token: Secret, action: str = "deploy", wait_seconds: float = 300,
           progress: Callable[[str], None] = print, record: Path = HISTORY) -> Deployed:
    model = model.resolve()
    if not model.is_file() or not model.name.endswith(".tar.gz"):
        raise DeployError(f"no model file at {model} (train one with `make train`)")
    started = time.monotonic()
    if not history(record) and urls:
        # First deployment here: remember what the servers run now (started by `make run`), so that
        # `rollback` can go back to it.
        running = loaded_model(urls[0].rstrip("/"), token)
        if running:
            _record(model.parent / Path(running).name, urls, "running before the first deploy", record)
    for url in urls:
        url = url.rstrip("/")
        progress(f"{action}: {url}: loading {model.name}")
        try:
            response = httpx.put(f"{url}/model", params={"token": token.reveal()}, json={"model_file": str(model)},
                                 timeout=wait_seconds)
        except httpx.HTTPError as exc:
            raise DeployError(f"{url}: cannot reach Rasa ({type(exc).__name__}); nothing changed there") from exc
        if response.status_code not in (200, 204):
            raise DeployError(f"{url}: Rasa refused the model (HTTP {response.status_code}: {response.text[:200]})")
        deadline = time.monotonic() + wait_seconds
        while True:
            current = loaded_model(url, token)
            if current and Path(current).name == model.name:
                break
            if time.monotonic() > deadline:
                raise DeployError(f"{url}: still on {current} after {wait_seconds:.0f}s")
            time.sleep(0.5)
        progress(f"{action}: {url}: serving {model.name} ({time.monotonic() - started:.1f}s)")
    _record(model, urls, action, record)
    return Deployed(model, list(urls), time.monotonic() - started)


def previous_model(record: Path = HISTORY) -> Path:
    entries = history(record)
    if len(entries) < 2:
        raise DeployError("no earlier deployment to go back to (var/deployments.json)")
    current = entries[-1]["model"]
    for entry in reversed(entries[:-1]):
        if entry["model"] != current:
            return Path(entry["model"])
    raise DeployError("every recorded deployment is the current model")
