"""A small client for the Rasa server's REST channel."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import httpx

from bot.errors import RasaError, RasaUnavailable
from bot.settings import Secret

log = logging.getLogger(__name__)


class RasaClient:
    """Sends one user message to Rasa and returns the bot messages it produced."""

    def __init__(self, base_url: str, token: Secret, timeout: float = 30.0,
                 transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        self._token = token
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    async def send(self, sender: str, message: str, metadata: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
        body = {"sender": sender, "message": message, "metadata": metadata or {}}
        try:
            response = await self._client.post("/webhooks/gateway/webhook", json=body)
        except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
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
        return [m for m in messages if isinstance(m, dict)]

    async def ready(self) -> bool:
        try:
            response = await self._client.get("/status", params={"token": self._token.reveal()})
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and bool(response.json().get("model_file"))

    async def close(self) -> None:
        await self._client.aclose()
