"""The console's JSON API under /console/api/ (documented in docs/api.md) and its page.

Every route but login needs a session cookie; every POST needs `Content-Type: application/json` and
the session's `X-CSRF-Token`. Roles: counsellor (queue, cases they hold), supervisor and admin (every
case, priorities, statistics). Text is returned as data; the page inserts it with textContent only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot import handoff as cases
from bot.console.auth import COOKIE, AuthError, csrf_ok, login, logout, session_of
from bot.conversation import Reply
from bot.db import Conversation, Counsellor, Handoff, HandoffEvent, HandoffNote, Message, utcnow
from bot.handoff import HandoffError
from bot.inputs import storable

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MAX_TEXT = 4000


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _page_headers() -> Dict[str, str]:
    return {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "Cache-Control": "no-store"}


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def _iso(value: Optional[dt.datetime]) -> Optional[str]:
    return value.isoformat() + "Z" if value else None


def _me(c: Counsellor) -> Dict[str, Any]:
    return {"id": c.id, "username": c.username, "display_name": c.display_name, "role": c.role,
            "languages": [x for x in c.languages.split(",") if x]}


Handler = Callable[[Request, Counsellor], Awaitable[Response]]


def authed(handler: Handler, roles: Optional[tuple] = None) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        gw = request.app.state.gateway
        found = session_of(gw.db, request.cookies.get(COOKIE))
        if found is None:
            return _error(401, "unauthenticated", "log in first")
        counsellor, session = found
        if request.method == "POST":
            if "application/json" not in request.headers.get("content-type", ""):
                return _error(415, "unsupported_media_type", "send application/json")
            if not csrf_ok(session, request.headers.get("x-csrf-token")):
                log.warning("console request refused: bad csrf counsellor=%s", counsellor.id)
                return _error(403, "csrf", "missing or wrong X-CSRF-Token")
        if roles and counsellor.role not in roles:
            return _error(403, "forbidden", "your role cannot do this")
        if any(isinstance(v, int) and not 0 < v < 2 ** 63 for v in request.path_params.values()):
            return _error(404, "not_found", "no such record")  # ids the database cannot even hold
        try:
            return await handler(request, counsellor)
        except HandoffError as exc:
            return _error(exc.status, exc.code, str(exc))
    return wrapped


async def _body(request: Request) -> Dict[str, Any]:
    raw = await request.body()
    if len(raw) > 64 * 1024:
        raise HandoffError("too_large", "body too large", 413)
    try:
        data = json.loads(raw.decode("utf-8") or "{}")
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deeply nested JSON
        raise HandoffError("bad_request", "expected a JSON object", 400)
    if not isinstance(data, dict):
        raise HandoffError("bad_request", "expected a JSON object", 400)
    return storable(data)


def _text(data: Dict[str, Any], key: str = "text") -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise HandoffError("bad_text", f"{key}: a non-empty string", 400)
    if len(value) > MAX_TEXT:
        raise HandoffError("too_long", f"{key}: at most {MAX_TEXT} characters", 400)
    return value.strip()


# -- page and login -------------------------------------------------------------------------------
async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=_page_headers())


async def api_login(request: Request) -> Response:
    gw = request.app.state.gateway
    if "application/json" not in request.headers.get("content-type", ""):
        return _error(415, "unsupported_media_type", "send application/json")
    try:
        data = await _body(request)
    except HandoffError as exc:
        return _error(exc.status, exc.code, str(exc))
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or len(password) > 1024:
        return _error(400, "bad_request", "username and password")
    previous = request.cookies.get(COOKIE)
    if previous:
        logout(gw.db, previous)  # never reuse a session id from before the login
    try:
        counsellor, token, csrf = await asyncio.to_thread(login, gw.db, username, password,
                                                          gw.settings.console_session_hours)
    except AuthError as exc:
        return _error(401, "login_failed", str(exc))
    response = _json({"me": _me(counsellor), "csrf": csrf})
    response.set_cookie(COOKIE, token, max_age=int(gw.settings.console_session_hours * 3600), path="/console",
                        httponly=True, samesite="strict", secure=gw.settings.console_secure_cookie)
    return response


async def api_logout(request: Request, me: Counsellor) -> Response:
    logout(request.app.state.gateway.db, request.cookies.get(COOKIE, ""))
    response = _json({"ok": True})
    response.delete_cookie(COOKIE, path="/console")
    return response


async def api_me(request: Request, me: Counsellor) -> Response:
    found = session_of(request.app.state.gateway.db, request.cookies.get(COOKIE))
    return _json({"me": _me(me), "csrf": found[1].csrf_token if found else None})


# -- queue and cases --------------------------------------------------------------------------------
def _case_summary(h: Handoff, names: Dict[int, str], now: dt.datetime) -> Dict[str, Any]:
    return {"id": h.id, "status": h.status, "priority": h.priority, "reason": h.reason, "language": h.language,
            "assignee": names.get(h.assignee_id) if h.assignee_id else None,
            "waiting_since": _iso(h.waiting_since), "waiting_seconds": int((now - h.waiting_since).total_seconds()),
            "last_activity_at": _iso(h.last_activity_at), "snoozed_until": _iso(h.snoozed_until)}


def _names(s) -> Dict[int, str]:
    return {c.id: c.username for c in s.scalars(select(Counsellor)).all()}


async def api_queue(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    window = dt.timedelta(minutes=gw.settings.handoff_language_window_minutes)
    found = cases.queue(gw.db, me, window)
    now = utcnow()
    with gw.db.session() as s:
        names = _names(s)
    return _json({"cases": [_case_summary(h, names, now) for h in found]})


async def api_case(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    case_id = request.path_params["case_id"]
    window = dt.timedelta(minutes=gw.settings.handoff_language_window_minutes)
    with gw.db.session() as s:
        h = s.get(Handoff, case_id)
        if h is None or not cases.visible_to(h, me, window, utcnow()):
            return _error(404, "not_found", "no such case")
        names = _names(s)
        conv = s.get(Conversation, h.conversation_id)
        messages = s.scalars(select(Message).where(Message.conversation_id == h.conversation_id)
                             .order_by(Message.id)).all()
        notes = s.scalars(select(HandoffNote).where(HandoffNote.handoff_id == h.id).order_by(HandoffNote.id)).all()
        events = s.scalars(select(HandoffEvent).where(HandoffEvent.handoff_id == h.id).order_by(HandoffEvent.id)).all()
        language = h.language or (conv.language if conv else None)
        return _json({
            "case": _case_summary(h, names, utcnow()),
            "channel": conv.channel if conv else None,
            "direction": gw.content.languages[gw.content.resolve_language(language)].direction,
            "consent": h.consent,
            "card": json.loads(h.case_card or "{}"),
            "transcript": [{"id": m.id, "direction": m.direction, "sender": m.sender,
                            "author": names.get(m.author_id) if m.author_id else None,
                            "text": m.text if m.kind not in _UNREADABLE else "", "kind": m.kind,
                            "state": m.state, "at": _iso(m.created_at), "misunderstood": bool(m.misunderstood)}
                           for m in messages],
            "notes": [{"id": n.id, "author": names.get(n.author_id), "text": n.text, "at": _iso(n.created_at)}
                      for n in notes],
            "events": [{"kind": e.kind, "detail": e.detail, "actor": e.actor, "at": _iso(e.created_at)}
                       for e in events],
        })


_UNREADABLE = frozenset({"voice", "audio", "photo", "video", "video_note", "animation", "document", "sticker",
                         "contact", "poll", "unsupported", "location"})


async def api_claim(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    cid = cases.claim(gw.db, request.path_params["case_id"], me)
    gw.service.notify(cid, "utter_counsellor_joined")
    gw.worker.wake_sender()
    return _json({"ok": True})


async def api_transfer(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    data = await _body(request)
    cases.transfer(gw.db, request.path_params["case_id"], me, _text(data, "to"))
    return _json({"ok": True})


async def api_snooze(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    data = await _body(request)
    minutes = data.get("minutes")
    if not isinstance(minutes, int) or not 1 <= minutes <= 7 * 24 * 60:
        raise HandoffError("bad_minutes", "minutes: 1 to 10080", 400)
    cases.snooze(gw.db, request.path_params["case_id"], me, minutes)
    return _json({"ok": True})


async def api_priority(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    data = await _body(request)
    cases.set_priority(gw.db, request.path_params["case_id"], me, str(data.get("priority")))
    return _json({"ok": True})


async def api_note(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    data = await _body(request)
    cases.add_note(gw.db, request.path_params["case_id"], me, _text(data))
    return _json({"ok": True})


async def api_reply(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    data = await _body(request)
    text = _text(data)
    case_id = request.path_params["case_id"]
    with gw.db.session() as s:
        h = s.get(Handoff, case_id)
        conv = s.get(Conversation, h.conversation_id) if h else None
    split = gw.service.splitters.get(conv.channel) if conv else None

    def splitter(value: str):
        return [r.text for r in split(Reply(value), conv.language)] if split else [value]

    message_id = cases.reply(gw.db, case_id, me, text, splitter)
    gw.worker.wake_sender()
    return _json({"ok": True, "message_id": message_id})


async def api_resolve(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    cid, _language = cases.resolve(gw.db, request.path_params["case_id"], me)
    gw.service.notify(cid, "utter_handoff_resolved")
    gw.worker.wake_sender()
    return _json({"ok": True})


async def api_misunderstood(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    data = await _body(request)
    cases.mark_misunderstood(gw.db, request.path_params["message_id"], me, bool(data.get("value", True)))
    return _json({"ok": True})


async def api_canned(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    language = gw.content.resolve_language(request.query_params.get("language"))
    return _json({"language": language, "replies": gw.content.canned_replies(language)})


async def api_counsellors(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    with gw.db.session() as s:
        people = s.scalars(select(Counsellor).where(Counsellor.active.is_(True)).order_by(Counsellor.username)).all()
        return _json({"counsellors": [{"username": c.username, "display_name": c.display_name,
                                       "languages": [x for x in c.languages.split(",") if x]} for c in people]})


async def api_stats(request: Request, me: Counsellor) -> Response:
    gw = request.app.state.gateway
    since = utcnow() - dt.timedelta(days=1)
    return _json(cases.stats(gw.db, since))


def cursor(gw) -> str:
    with gw.db.session() as s:
        last_message = s.scalar(select(func.max(Message.id))) or 0
        last_event = s.scalar(select(func.max(HandoffEvent.id))) or 0
        # Replies still waiting to go out (a small set, on the state index): their count changes
        # when one is delivered, so "sending" turns into sent on screen.
        undelivered = s.scalar(select(func.count(Message.id)).where(Message.state == "pending",
                                                                    Message.direction == "out")) or 0
    return f"{last_message}.{last_event}.{undelivered}"


async def api_updates(request: Request, me: Counsellor) -> Response:
    """Long poll: answers as soon as anything changed since `cursor` (at most 20 s later)."""
    gw = request.app.state.gateway
    since = request.query_params.get("cursor", "")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        now = cursor(gw)
        if now != since or loop.time() >= deadline or await request.is_disconnected():
            return _json({"cursor": now, "changed": now != since})
        await asyncio.sleep(0.1)


async def api_review(request: Request, me: Counsellor) -> Response:
    """The maintainers' review queue (redacted), by language, most frequent first."""
    from bot.review import intents, queue

    language = request.query_params.get("language") or None
    items = queue(request.app.state.gateway.db, language)
    return _json({"intents": intents() + ["discard"], "items": [
        {"id": i.id, "language": i.language, "text": i.text, "predicted": i.predicted_intent,
         "confidence": i.confidence, "count": i.count, "source": i.source} for i in items]})


async def api_review_decide(request: Request, me: Counsellor) -> Response:
    from bot.review import ReviewError, decide

    data = await _body(request)
    label = data.get("label")
    if not isinstance(label, str):
        raise HandoffError("bad_request", "label: an intent, out_of_scope or discard", 400)
    try:
        item = decide(request.app.state.gateway.db, request.path_params["item_id"], label, me.username)
    except ReviewError as exc:
        raise HandoffError("bad_request", str(exc), 400)
    return _json({"ok": True, "status": item.status, "label": item.label})


def routes() -> list:
    staff = ("counsellor", "supervisor", "admin")  # maintainers do not read cases

    def r(path: str, handler, methods=("GET",), roles=staff):
        return Route(path, authed(handler, roles), methods=list(methods))

    supervisors = ("supervisor", "admin")
    reviewers = ("maintainer", "supervisor", "admin")
    everyone = staff + ("maintainer",)
    return [
        Route("/console", page),
        Route("/console/", page),
        Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
        Route("/console/api/login", api_login, methods=["POST"]),
        r("/console/api/logout", api_logout, ("POST",), everyone),
        r("/console/api/me", api_me, roles=everyone),
        r("/console/api/review", api_review, roles=reviewers),
        r("/console/api/review/{item_id:int}", api_review_decide, ("POST",), reviewers),
        r("/console/api/queue", api_queue),
        r("/console/api/updates", api_updates),
        r("/console/api/cases/{case_id:int}", api_case),
        r("/console/api/cases/{case_id:int}/claim", api_claim, ("POST",)),
        r("/console/api/cases/{case_id:int}/transfer", api_transfer, ("POST",)),
        r("/console/api/cases/{case_id:int}/snooze", api_snooze, ("POST",)),
        r("/console/api/cases/{case_id:int}/priority", api_priority, ("POST",), supervisors),
        r("/console/api/cases/{case_id:int}/notes", api_note, ("POST",)),
        r("/console/api/cases/{case_id:int}/reply", api_reply, ("POST",)),
        r("/console/api/cases/{case_id:int}/resolve", api_resolve, ("POST",)),
        r("/console/api/messages/{message_id:int}/misunderstood", api_misunderstood, ("POST",)),
        r("/console/api/canned", api_canned),
        r("/console/api/counsellors", api_counsellors),
        r("/console/api/stats", api_stats, roles=supervisors),
    ]
