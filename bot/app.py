"""The gateway's ASGI app: web chat, Rasa's NLG endpoint, health checks.

Start with ``uvicorn --factory bot.app:create_app`` (``make run`` does it for you).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot.content import ContentStore
from bot.conversation import ConversationService
from bot.db import Database
from bot.errors import ContentError
from bot.rasa_client import RasaClient
from bot.settings import Settings, load_settings

log = logging.getLogger(__name__)

WEBCHAT_DIR = Path(__file__).resolve().parent / "webchat"
MAX_BODY_BYTES = 64 * 1024
_USER_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class Gateway:
    """Holds the app's collaborators; built once per process by `create_app`."""

    def __init__(self, settings: Settings, db: Database, content: ContentStore, rasa: RasaClient,
                 service: ConversationService) -> None:
        self.settings, self.db, self.content, self.rasa, self.service = settings, db, content, rasa, service


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def _json_body(request: Request) -> Optional[Dict[str, Any]]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return None
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def index(request: Request) -> Response:
    return FileResponse(WEBCHAT_DIR / "index.html", headers=_page_headers())


def _page_headers() -> Dict[str, str]:
    return {
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                                   "img-src 'self' data:; connect-src 'self'; frame-ancestors *",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


async def webchat_config(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    languages = [{"code": c.code, "name": c.name, "direction": c.direction,
                  "prompt": c.responses.get("utter_language_menu", {}).get("text", "")}
                 for c in gw.content.languages.values()]
    return JSONResponse({"languages": languages, "max_chars": gw.settings.max_message_chars})


async def webchat_message(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    if "application/json" not in request.headers.get("content-type", ""):
        return _error(415, "unsupported_media_type", "send application/json")
    data = await _json_body(request)
    if data is None:
        return _error(400, "bad_request", "expected a JSON object of at most 64 KiB")
    user_id = data.get("user_id")
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        return _error(400, "bad_user_id", "user_id: 8 to 64 letters, digits, '-' or '_'")
    text, payload, hint = data.get("text"), data.get("payload"), data.get("language")
    if text is not None and not isinstance(text, str):
        return _error(400, "bad_text", "text must be a string")
    if payload is not None and not isinstance(payload, str):
        return _error(400, "bad_payload", "payload must be a string")
    if hint is not None and not isinstance(hint, str):
        hint = None
    outcome = await gw.service.handle("webchat", user_id, text=text, payload=payload, language_hint=hint)
    return JSONResponse({"language": outcome.language, "direction": outcome.direction,
                         "replies": [r.as_dict() for r in outcome.replies]})


async def nlg(request: Request) -> Response:
    """Rasa's NLG endpoint: render a response in the conversation's language."""
    gw: Gateway = request.app.state.gateway
    token = request.query_params.get("token", "")
    if not hmac.compare_digest(token.encode(), gw.settings.nlg_token.reveal().encode()):
        return _error(403, "forbidden", "bad token")
    data = await _json_body(request)
    if data is None or not isinstance(data.get("response"), str):
        return _error(400, "bad_request", "expected Rasa's NLG request")
    tracker = data.get("tracker") if isinstance(data.get("tracker"), dict) else {}
    arguments = data.get("arguments") if isinstance(data.get("arguments"), dict) else {}
    slots = tracker.get("slots") if isinstance(tracker.get("slots"), dict) else {}
    language = arguments.get("language") or slots.get("language")
    if not isinstance(language, str) or language not in gw.content.languages:
        sender = tracker.get("sender_id")
        language = gw.service.language_of(sender) if isinstance(sender, str) else None
    try:
        rendered = gw.content.render(data["response"], language, arguments)
    except ContentError:
        log.error("nlg unknown response=%s", data["response"])
        return _error(404, "unknown_response", "no such response")
    sender = tracker.get("sender_id")
    if isinstance(sender, str) and isinstance(language, str) and language in gw.content.languages:
        gw.service.record_language(sender, language, source="chosen")
    return JSONResponse(rendered.as_nlg())


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 once Rasa has a model loaded and the language detector is built; 503 before."""
    from bot.languages import detector_ready

    gw: Gateway = request.app.state.gateway
    rasa_ok = await gw.rasa.ready()
    detection_ok = detector_ready()
    ok = rasa_ok and detection_ok
    return JSONResponse({"status": "ready" if ok else "waiting", "rasa": rasa_ok, "language_detector": detection_ok},
                        status_code=200 if ok else 503)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    from bot.languages import warm_up_in_background

    warm_up_in_background()
    yield
    gateway: Gateway = app.state.gateway
    await gateway.rasa.close()
    gateway.db.dispose()


def create_app(settings: Optional[Settings] = None, rasa: Optional[RasaClient] = None,
               db: Optional[Database] = None) -> Starlette:
    settings = settings or load_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO, and Rasa's API takes its token in the URL.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    db = db or Database(settings.database_url)
    db.upgrade()
    content = ContentStore(settings.content_dir)
    rasa = rasa or RasaClient(settings.rasa_url, settings.rasa_token, settings.rasa_timeout_seconds)
    service = ConversationService(settings, db, content, rasa)
    app = Starlette(routes=[
        Route("/", index),
        Route("/webchat/config", webchat_config),
        Route("/webchat/api/message", webchat_message, methods=["POST"]),
        Route("/nlg", nlg, methods=["POST"]),
        Route("/health", health),
        Route("/ready", ready),
        Mount("/static", StaticFiles(directory=WEBCHAT_DIR), name="static"),
    ], lifespan=_lifespan)
    app.state.gateway = Gateway(settings, db, content, rasa, service)
    return app
