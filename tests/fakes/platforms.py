"""A local fake of the Telegram Bot API and of the WhatsApp Cloud (Graph) API.

It records every call the gateway makes, can queue failures (429 with retry_after, 5xx) and can
hand out updates to a polling client. It runs as a real HTTP server on a free port (a thread),
so the gateway is exercised through python-telegram-bot and httpx exactly as in production.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from urllib.parse import parse_qs
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Call:
    platform: str  # telegram | whatsapp
    method: str  # Bot API method, or "messages"
    body: Dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    token: str = ""


class FakePlatforms:
    def __init__(self) -> None:
        self.calls: List[Call] = []
        self.failures: Dict[str, List[Dict[str, Any]]] = {"telegram": [], "whatsapp": []}
        self.updates: List[Dict[str, Any]] = []  # for getUpdates (polling)
        self.lock = threading.Lock()
        self._message_id = 1000
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None

    # -- what tests look at ----------------------------------------------------------------------
    def sent(self, platform: str, method: Optional[str] = None) -> List[Call]:
        with self.lock:
            return [c for c in self.calls if c.platform == platform and (method is None or c.method == method)]

    def telegram_texts(self, chat_id: int) -> List[str]:
        return [c.body.get("text") for c in self.sent("telegram", "sendMessage") if int(c.body.get("chat_id")) == chat_id]

    def whatsapp_to(self, number: str) -> List[Dict[str, Any]]:
        return [c.body for c in self.sent("whatsapp", "messages") if c.body.get("to") == number]

    def fail_next(self, platform: str, status: int, retry_after: Optional[int] = None, code: Optional[int] = None,
                  times: int = 1) -> None:
        with self.lock:
            for _ in range(times):
                self.failures[platform].append({"status": status, "retry_after": retry_after, "code": code})

    def wait_for(self, predicate, timeout: float = 20.0, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()

    async def await_for(self, predicate, timeout: float = 20.0, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(interval)
        return predicate()

    # -- the server ------------------------------------------------------------------------------
    def _failure(self, platform: str) -> Optional[Dict[str, Any]]:
        with self.lock:
            return self.failures[platform].pop(0) if self.failures[platform] else None

    async def telegram(self, request: Request):
        token, method = request.path_params["token"], request.path_params["method"]
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            body = json.loads(raw or b"{}")
        else:  # python-telegram-bot posts form fields, each value JSON-encoded when not a string
            body = {k: _maybe_json(v[-1]) for k, v in parse_qs(raw.decode("utf-8")).items()}
        if method == "getUpdates":
            with self.lock:
                offset = int(body.get("offset") or 0)
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
                result = list(self.updates)
            if not result:
                await asyncio.sleep(min(float(body.get("timeout") or 0), 0.3))
            return JSONResponse({"ok": True, "result": result})
        with self.lock:
            self.calls.append(Call("telegram", method, body, token=token))
        failure = self._failure("telegram") if method == "sendMessage" else None
        if failure:
            status = failure["status"]
            if status == 429:
                return JSONResponse({"ok": False, "error_code": 429, "description": "Too Many Requests: retry after",
                                     "parameters": {"retry_after": failure["retry_after"] or 1}}, status_code=429)
            return JSONResponse({"ok": False, "error_code": status, "description": "Fake failure"}, status_code=status)
        if method == "sendMessage":
            with self.lock:
                self._message_id += 1
                mid = self._message_id
            return JSONResponse({"ok": True, "result": {
                "message_id": mid, "date": int(time.time()),
                "chat": {"id": int(body["chat_id"]), "type": "private"}, "text": body.get("text", "")}})
        if method == "getMe":
            return JSONResponse({"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "Fake",
                                                        "username": "fake_bot"}})
        return JSONResponse({"ok": True, "result": True})

    async def graph(self, request: Request):
        body = json.loads(await request.body() or b"{}")
        with self.lock:
            self.calls.append(Call("whatsapp", "messages", body, token=request.headers.get("authorization", "")))
        failure = self._failure("whatsapp")
        if failure:
            headers = {"Retry-After": str(failure["retry_after"])} if failure["retry_after"] is not None else {}
            error = {"message": "fake failure", "type": "OAuthException", "code": failure["code"] or failure["status"]}
            return JSONResponse({"error": error}, status_code=failure["status"], headers=headers)
        with self.lock:
            self._message_id += 1
            mid = self._message_id
        return JSONResponse({"messaging_product": "whatsapp", "contacts": [{"input": body.get("to"),
                                                                            "wa_id": body.get("to")}],
                             "messages": [{"id": f"wamid.fake{mid}"}]})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/bot{token}/{method}", self.telegram, methods=["GET", "POST"]),
            Route("/{version}/{phone}/messages", self.graph, methods=["POST"]),
        ])

    def start(self) -> "FakePlatforms":
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                                ws="wsproto")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise RuntimeError("the fake platform server did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- payloads in the shapes the platforms document -------------------------------------------------
def telegram_text(update_id: int, chat_id: int, text: str, language: str = "en", message_id: Optional[int] = None,
                  chat_type: str = "private") -> Dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": message_id if message_id is not None else update_id, "date": int(time.time()),
        "from": {"id": chat_id, "is_bot": False, "first_name": "Test", "language_code": language},
        "chat": {"id": chat_id, "type": chat_type, "first_name": "Test"}, "text": text}}


def telegram_media(update_id: int, chat_id: int, kind: str, language: str = "en") -> Dict[str, Any]:
    update = telegram_text(update_id, chat_id, "", language)
    message = update["message"]
    del message["text"]
    shapes = {
        "voice": {"voice": {"file_id": "f1", "file_unique_id": "u1", "duration": 3}},
        "photo": {"photo": [{"file_id": "f2", "file_unique_id": "u2", "width": 10, "height": 10}]},
        "sticker": {"sticker": {"file_id": "f3", "file_unique_id": "u3", "width": 512, "height": 512,
                                "is_animated": False, "is_video": False, "type": "regular"}},
        "document": {"document": {"file_id": "f4", "file_unique_id": "u4"}},
        "location": {"location": {"latitude": 50.85, "longitude": 4.35}},
        "contact": {"contact": {"phone_number": "+32000000000", "first_name": "X"}},
    }
    message.update(shapes[kind])
    return update


def telegram_callback(update_id: int, chat_id: int, data: str, language: str = "en") -> Dict[str, Any]:
    return {"update_id": update_id, "callback_query": {
        "id": f"cq{update_id}", "chat_instance": "ci",
        "from": {"id": chat_id, "is_bot": False, "first_name": "Test", "language_code": language},
        "message": {"message_id": 5, "date": int(time.time()), "chat": {"id": chat_id, "type": "private"},
                    "text": "menu"},
        "data": data}}


def whatsapp_body(messages: List[Dict[str, Any]], phone_number_id: str = "123456789") -> Dict[str, Any]:
    contacts = [{"profile": {"name": "Test"}, "wa_id": m["from"]} for m in messages]
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA_ID", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
        "contacts": contacts, "messages": messages}}]}]}


def whatsapp_text(number: str, mid: str, text: str, timestamp: Optional[int] = None) -> Dict[str, Any]:
    return {"from": number, "id": mid, "timestamp": str(timestamp or int(time.time())), "type": "text",
            "text": {"body": text}}


def whatsapp_reply(number: str, mid: str, button_id: str, title: str) -> Dict[str, Any]:
    return {"from": number, "id": mid, "timestamp": str(int(time.time())), "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": button_id, "title": title}}}


def whatsapp_status(mid: str, number: str) -> Dict[str, Any]:
    body = whatsapp_body([])
    value = body["entry"][0]["changes"][0]["value"]
    del value["messages"], value["contacts"]
    value["statuses"] = [{"id": mid, "status": "delivered", "timestamp": str(int(time.time())), "recipient_id": number}]
    return body
