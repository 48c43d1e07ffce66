"""The gateway's ASGI app: web chat, Rasa's NLG endpoint, health checks.

Start with ``uvicorn --factory bot.app:create_app`` (``make run`` does it for you).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot.channels.telegram import TelegramChannel
from bot.channels.telegram import parse_update as parse_telegram
from bot.channels.whatsapp import WhatsAppChannel, verify_signature
from bot.channels.whatsapp import parse_webhook as parse_whatsapp
from bot.console.api import routes as console_routes
from bot.content import ContentStore
from bot.conversation import ConversationService, Incoming
from bot.db import IN_PENDING, Database
from bot.errors import ConfigError, ContentError
from bot.inputs import storable
from bot.rasa_client import RasaClient
from bot.settings import Settings, load_settings
from bot.worker import Worker

log = logging.getLogger(__name__)

WEBCHAT_DIR = Path(__file__).resolve().parent / "webchat"
MAX_BODY_BYTES = 64 * 1024
MAX_WEBHOOK_BYTES = 1024 * 1024
NLG_MAX_BODY_BYTES = 8 * 1024 * 1024  # token-protected, from Rasa only
_USER_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class Gateway:
    """Holds the app's collaborators; built once per process by `create_app`."""

    def __init__(self, settings: Settings, db: Database, content: ContentStore, rasa: RasaClient,
                 service: ConversationService, worker: Worker, telegram: Optional[TelegramChannel] = None,
                 whatsapp: Optional[WhatsAppChannel] = None) -> None:
        self.settings, self.db, self.content, self.rasa, self.service = settings, db, content, rasa, service
        self.worker, self.telegram, self.whatsapp = worker, telegram, whatsapp
        self.background: list = []


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def _json_body(request: Request, limit: int = MAX_BODY_BYTES) -> Optional[Dict[str, Any]]:
    body = await request.body()
    if len(body) > limit:
        return None
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deeply nested JSON
        return None
    return storable(data) if isinstance(data, dict) else None


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
    client_id = data.get("message_id")
    if client_id is not None and (not isinstance(client_id, str) or not _USER_ID.match(client_id)):
        return _error(400, "bad_message_id", "message_id: 8 to 64 letters, digits, '-' or '_'")
    incoming = Incoming("webchat", user_id, text=text, payload=payload, language_hint=hint,
                        kind="payload" if payload is not None and text is None else "text",
                        message_id=f"w:{client_id}" if client_id else None)
    # Database work runs in a thread: the event loop goes on serving other requests meanwhile.
    accepted = await asyncio.to_thread(gw.service.accept, incoming)
    unstored = []
    if accepted.message_id is not None and not accepted.duplicate and accepted.state == IN_PENDING:
        unstored = await gw.worker.wait_processed(accepted.message_id, gw.settings.webchat_wait_seconds)
    return JSONResponse(await asyncio.to_thread(_webchat_replies, gw, accepted.conversation_id,
                                                accepted.message_id, unstored))


def _webchat_replies(gw: "Gateway", cid: str, message_id: Optional[int] = None, unstored=()) -> Dict[str, Any]:
    replies, language, pending = gw.service.webchat_view(cid, message_id)
    replies += list(unstored)
    language = language or gw.settings.default_language
    return {"language": language, "direction": gw.service.direction(language),
            "replies": [r.as_dict() for r in replies], "pending": pending}


async def webchat_messages(request: Request) -> Response:
    """Replies that arrived after the request that caused them (Rasa was down; later, counsellors)."""
    gw: Gateway = request.app.state.gateway
    user_id = request.query_params.get("user_id", "")
    if not _USER_ID.match(user_id):
        return _error(400, "bad_user_id", "user_id: 8 to 64 letters, digits, '-' or '_'")
    cid = gw.service.conversation_id("webchat", user_id)
    return JSONResponse(await asyncio.to_thread(_webchat_replies, gw, cid))


# -- Telegram -------------------------------------------------------------------------------------
async def telegram_webhook(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    if gw.telegram is None:
        return _error(404, "not_found", "Telegram is not configured")
    secret = gw.settings.telegram_webhook_secret
    given = request.headers.get("x-telegram-bot-api-secret-token", "")
    if secret is None or not hmac.compare_digest(given.encode(), secret.reveal().encode()):
        log.warning("telegram webhook refused: bad secret token")
        return _error(403, "forbidden", "bad secret token")
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        return _error(413, "too_large", "update too large")
    try:
        data = json.loads(body.decode("utf-8"))
        incoming = parse_telegram(data)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deeply nested JSON
        return _error(400, "bad_request", "expected a Telegram update (JSON)")
    if incoming is None:
        return JSONResponse({"ok": True, "ignored": True})
    gw.telegram.acknowledge(incoming)
    accepted = await asyncio.to_thread(gw.service.accept, incoming)
    return JSONResponse({"ok": True, "duplicate": accepted.duplicate})


def accept_telegram_update(gw: "Gateway", data: Dict[str, Any]) -> None:
    """Polling mode: the same path as the webhook."""
    try:
        incoming = parse_telegram(data)
    except ValueError:
        log.warning("telegram update ignored: malformed")
        return
    if incoming is not None and gw.telegram is not None:
        gw.telegram.acknowledge(incoming)
        gw.service.accept(incoming)


# -- WhatsApp -------------------------------------------------------------------------------------
async def whatsapp_verify(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    token = gw.settings.whatsapp_verify_token
    params = request.query_params
    given = params.get("hub.verify_token", "")
    if gw.whatsapp is None or token is None:
        return _error(404, "not_found", "WhatsApp is not configured")
    if params.get("hub.mode") != "subscribe" or not hmac.compare_digest(given.encode(), token.reveal().encode()):
        return _error(403, "forbidden", "verification failed")
    challenge = params.get("hub.challenge", "")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,256}", challenge):
        return _error(400, "bad_request", "bad challenge")
    return PlainTextResponse(challenge)


async def whatsapp_webhook(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    secret = gw.settings.whatsapp_app_secret
    if gw.whatsapp is None or secret is None:
        return _error(404, "not_found", "WhatsApp is not configured")
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        return _error(413, "too_large", "body too large")
    if not verify_signature(secret.reveal(), body, request.headers.get("x-hub-signature-256")):
        log.warning("whatsapp webhook refused: bad signature")
        return _error(403, "forbidden", "bad signature")
    try:
        messages = parse_whatsapp(json.loads(body.decode("utf-8")))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deeply nested JSON
        return _error(400, "bad_request", "expected a WhatsApp Cloud API webhook (JSON)")
    duplicates = 0
    for incoming in messages:
        duplicates += (await asyncio.to_thread(gw.service.accept, incoming)).duplicate
    return JSONResponse({"ok": True, "messages": len(messages), "duplicates": duplicates})


async def nlg(request: Request) -> Response:
    """Rasa's NLG endpoint: render a response in the conversation's language."""
    gw: Gateway = request.app.state.gateway
    token = request.query_params.get("token", "")
    if not hmac.compare_digest(token.encode(), gw.settings.nlg_token.reveal().encode()):
        return _error(403, "forbidden", "bad token")
    # bot.rasa_nlg sends a small body; Rasa's own callback generator sends the whole conversation.
    data = await _json_body(request, limit=NLG_MAX_BODY_BYTES)
    if data is None or not isinstance(data.get("response"), str):
        return _error(400, "bad_request", "expected Rasa's NLG request")
    tracker = data.get("tracker") if isinstance(data.get("tracker"), dict) else {}
    arguments = data.get("arguments") if isinstance(data.get("arguments"), dict) else {}
    slots = tracker.get("slots") if isinstance(tracker.get("slots"), dict) else {}
    language = arguments.get("language") or slots.get("language")
    if not isinstance(language, str) or language not in gw.content.languages:
        sender = tracker.get("sender_id")
        language = await asyncio.to_thread(gw.service.language_of, sender) if isinstance(sender, str) else None
    try:
        rendered = gw.content.render(data["response"], language, arguments)
    except ContentError:
        log.error("nlg unknown response=%s", data["response"])
        return _error(404, "unknown_response", "no such response")
    sender = tracker.get("sender_id")
    unchanged = language == tracker.get("gateway_language")  # the language we sent with the message
    if isinstance(sender, str) and isinstance(language, str) and language in gw.content.languages and not unchanged:
        try:
            await asyncio.to_thread(gw.service.record_language, sender, language, "chosen")
        except Exception as exc:  # the answer does not depend on it: the database may be restarting
            log.warning("nlg: language not recorded conversation=%s error=%s", sender, type(exc).__name__)
    return JSONResponse(rendered.as_nlg())


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 when this gateway can answer: its database answers, at least one Rasa replica has a model loaded
    and the language detector is built; 503 (with what is missing) before. Kubernetes' readiness probe."""
    from bot.languages import detector_ready

    gw: Gateway = request.app.state.gateway
    try:
        await asyncio.to_thread(gw.db.ping)
        database_ok = True
    except Exception:
        database_ok = False
    replicas = await gw.rasa.replicas_ready()
    rasa_ok = any(replicas.values())
    detection_ok = detector_ready()
    ok = database_ok and rasa_ok and detection_ok
    return JSONResponse({"status": "ready" if ok else "waiting", "database": database_ok, "rasa": rasa_ok,
                         "rasa_replicas_ready": sum(replicas.values()), "rasa_replicas": len(replicas),
                         "language_detector": detection_ok}, status_code=200 if ok else 503)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format (bot/metrics.py). With METRICS_TOKEN set, a bearer token is required."""
    import hmac

    from bot import metrics

    gw: Gateway = request.app.state.gateway
    token = gw.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token.reveal()}".encode()):
            return _error(401, "unauthorised", "metrics need the bearer token")
    replicas = await gw.rasa.replicas_ready()
    extra = metrics.gauge_lines("crossroads_rasa_replicas_ready", "Rasa replicas with a model loaded, of those configured.",
                                [({"state": "ready"}, sum(replicas.values())), ({"state": "configured"}, len(replicas))])
    try:
        body = await asyncio.to_thread(metrics.render, gw.db, extra)
    except Exception as exc:  # the database is restarting: counters still help
        log.warning("metrics: queues unavailable error=%s", type(exc).__name__)
        body = metrics.render(None, extra)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    from bot.languages import warm_up_in_background

    warm_up_in_background()
    gateway: Gateway = app.state.gateway
    await gateway.worker.start()
    stopping = False
    if gateway.telegram is not None:
        if gateway.settings.telegram_webhook_url:
            gateway.background.append(asyncio.create_task(gateway.telegram.register_webhook(
                gateway.settings.telegram_webhook_url, gateway.settings.telegram_webhook_secret)))
        else:
            gateway.background.append(asyncio.create_task(gateway.telegram.poll(
                lambda data: accept_telegram_update(gateway, data), lambda: stopping)))
    yield
    stopping = True
    for task in gateway.background:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await gateway.worker.stop()
    await gateway.rasa.close()
    gateway.db.dispose()


def _channels(settings: Settings, content: ContentStore, telegram_transport=None, whatsapp_transport=None):
    telegram = whatsapp = None
    if settings.telegram_enabled:
        if settings.telegram_webhook_url and settings.telegram_webhook_secret is None:
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_WEBHOOK_URL")
        telegram = TelegramChannel(settings.telegram_bot_token, settings.telegram_api_base_url)
    if settings.whatsapp_enabled:
        if settings.whatsapp_app_secret is None or settings.whatsapp_verify_token is None:
            raise ConfigError("WHATSAPP_APP_SECRET and WHATSAPP_VERIFY_TOKEN are required with WhatsApp")

        def list_label(language: Optional[str]) -> str:
            return content.render("utter_choose", language).text

        whatsapp = WhatsAppChannel(settings, list_label, transport=whatsapp_transport)
    return telegram, whatsapp


def create_app(settings: Optional[Settings] = None, rasa: Optional[RasaClient] = None,
               db: Optional[Database] = None, whatsapp_transport=None) -> Starlette:
    settings = settings or load_settings()
    from bot.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    # httpx logs every request URL at INFO, and Rasa's API takes its token in the URL.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # python-telegram-bot logs the parameters of every Bot API call (chat ids, text) at DEBUG.
    logging.getLogger("telegram").setLevel(logging.WARNING)
    db = db or Database(settings.database_url, keys=settings.data_keys)
    db.upgrade()
    content = ContentStore(settings.content_dir)
    rasa = rasa or RasaClient(settings.rasa_url, settings.rasa_token, settings.rasa_timeout_seconds)
    from bot.tracker_store import TrackerStore

    service = ConversationService(settings, db, content, rasa, tracker=TrackerStore(settings.tracker_store_url))
    telegram, whatsapp = _channels(settings, content, whatsapp_transport=whatsapp_transport)
    senders = {c.channel: c for c in (telegram, whatsapp) if c is not None}
    worker = Worker(service, senders)
    app = Starlette(routes=[
        Route("/", index),
        Route("/webchat/config", webchat_config),
        Route("/webchat/api/message", webchat_message, methods=["POST"]),
        Route("/webchat/api/messages", webchat_messages),
        Route("/telegram/webhook", telegram_webhook, methods=["POST"]),
        Route("/whatsapp/webhook", whatsapp_verify, methods=["GET"]),
        Route("/whatsapp/webhook", whatsapp_webhook, methods=["POST"]),
        Route("/nlg", nlg, methods=["POST"]),
        Route("/health", health),
        Route("/ready", ready),
        Route("/metrics", metrics_endpoint),
        Mount("/static", StaticFiles(directory=WEBCHAT_DIR), name="static"),
        *console_routes(),
    ], lifespan=_lifespan)
    app.state.gateway = Gateway(settings, db, content, rasa, service, worker, telegram, whatsapp)
    return app
