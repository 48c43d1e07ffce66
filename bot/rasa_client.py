"""A client for the Rasa servers' REST channel: one server in development, several replicas in production.

With several replicas (`RASA_URL` is a comma-separated list) each message goes to the next replica
that is not marked down (round robin). A replica that cannot be reached, or answers 502/503/504, is
marked down for a few seconds and the same message goes to the next one at once, so a replica that
dies costs a person no waiting. Only when every replica is down does `send` raise `RasaUnavailable`
(the gateway then keeps the message and retries when one is back).

Order and exactly-once towards the person are the gateway's: it sends one message of a conversation
at a time and stores the replies of the one call that succeeded. A replica that dies after saving its
turn but before answering leaves that user event twice in Rasa's tracker; the person still gets one
answer. Rasa's Redis lock store keeps two replicas from working on one conversation at once.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import httpx

from bot.errors import RasaError, RasaUnavailable
from bot.settings import Secret

log = logging.getLogger(__name__)

DOWN_SECONDS = 3.0  # how long a replica that failed is skipped (then it is tried again)


def parse_urls(value: Union[str, Sequence[str]]) -> List[str]:
    urls = [u.strip().rstrip("/") for u in (value.split(",") if isinstance(value, str) else value) if u and u.strip()]
    if not urls:
        raise ValueError("no Rasa URL")
    return urls


class _Replica:
    def __init__(self, url: str, timeout: float, transport: Optional[httpx.AsyncBaseTransport]) -> None:
        self.url = url
        self.client = httpx.AsyncClient(base_url=url, timeout=timeout, transport=transport,
                                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
        self.down_until = 0.0

    def available(self, now: float) -> bool:
        return now >= self.down_until


class RasaClient:
    """Sends one user message to a Rasa replica and returns the bot messages it produced."""

    def __init__(self, base_url: Union[str, Sequence[str]], token: Secret, timeout: float = 30.0,
                 transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        self._token = token
        self.replicas = [_Replica(url, timeout, transport) for url in parse_urls(base_url)]
        self._next = itertools.cycle(range(len(self.replicas)))

    @property
    def urls(self) -> List[str]:
        return [r.url for r in self.replicas]

    def _order(self) -> List[_Replica]:
        """Every replica once, starting with the next in turn; those marked down last."""
        start = next(self._next)
        ordered = self.replicas[start:] + self.replicas[:start]
        now = time.monotonic()
        return [r for r in ordered if r.available(now)] + [r for r in ordered if not r.available(now)]

    async def send(self, sender: str, message: str, metadata: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
        body = {"sender": sender, "message": message, "metadata": metadata or {}}
        failures = []
        for replica in self._order():
            try:
                return await self._send_one(replica, body)
            except RasaUnavailable as exc:
                replica.down_until = time.monotonic() + DOWN_SECONDS
                failures.append(f"{replica.url}: {exc}")
                if len(self.replicas) > 1:
                    log.warning("rasa replica unavailable url=%s error=%s; trying the next", replica.url, exc)
        raise RasaUnavailable("; ".join(failures))

    @staticmethod
    async def _send_one(replica: _Replica, body: Dict[str, Any]) -> List[Dict[str, Any]]:
        try:
            response = await replica.client.post("/webhooks/gateway/webhook", json=body)
        except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError,
                httpx.WriteError) as exc:
            raise RasaUnavailable(type(exc).__name__) from exc
        if response.status_code in (502, 503, 504):
            raise RasaUnavailable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise RasaError(f"HTTP {response.status_code}")
        try:
            messages = response.json()
        except ValueError as exc:
            raise RasaError("answer is not JSON") from exc
        if not isinstance(messages, list):
            raise RasaError("answer is not a list")
        replica.down_until = 0.0
        return [m for m in messages if isinstance(m, dict)]

    async def _ready_one(self, replica: _Replica) -> bool:
        try:
            response = await replica.client.get("/status", params={"token": self._token.reveal()})
        except httpx.HTTPError:
            return False
        try:
            return response.status_code == 200 and bool(response.json().get("model_file"))
        except ValueError:
            return False

    async def ready(self) -> bool:
        """True when at least one replica has a model loaded."""
        for replica in self.replicas:
            if await self._ready_one(replica):
                replica.down_until = 0.0
                return True
        return False

    async def replicas_ready(self) -> Dict[str, bool]:
        return {r.url: await self._ready_one(r) for r in self.replicas}

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.client.aclose()
