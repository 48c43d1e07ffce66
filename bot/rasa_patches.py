"""Two changes to Rasa 3.6, applied in each Rasa server process (bot/rasa_channel.py imports this).

1. A tracker store that fails is an error, not a fresh conversation. Rasa wraps every tracker store in
   `FailSafeTrackerStore`, which on a failed read returns no tracker (the person's conversation starts
   again: language, answers and safety context gone) and on a failed write keeps the turn in the
   replica's memory only, and answers as if nothing happened. While PostgreSQL restarts, that is
   silent data loss. Here both raise `TrackerStoreUnavailable`, our channel answers 503, and the gateway
   keeps the message and retries it when the store is back (found by `make bench`'s failure test).

2. An action that fails fails the turn. Rasa logs an exception in an action (the NLG call for an answer,
   the action server) and goes on without that action's events: the person silently gets no answer, and
   the gateway, seeing a successful turn, stores nothing to send. During a PostgreSQL restart that lost
   answers (`make bench`'s failure test). Now the turn raises `ActionFailed`; our channel answers
   503 (an unreachable service) or 500, Rasa does not save the tracker, and the gateway retries.

3. Speed: `Event.resolve_by_type` walks every subclass of `Event` (recursively, checking each for
   abstract methods) for every event it deserialises, and a turn deserialises the whole conversation:
   the class found for a type name is now remembered (11% of a replica's CPU under load).
   `RemoteAction._validate_action_result` calls `jsonschema.validate(result, schema)` for every answer of
the action server. `jsonschema.validate` checks the schema itself first, every time: under load, py-spy
showed 30% of a Rasa replica's CPU there (docs/decisions/0009-performance.md). Here the schema is
checked once and the compiled validator is reused; results are validated exactly as before and a bad
answer still raises `ValidationError` with Rasa's explanation.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any, Dict, List, Optional, Text

log = logging.getLogger(__name__)
_applied = False
# The failures of the actions run by the current turn (each Sanic request is its own asyncio task).
_failures: ContextVar[Optional[List[BaseException]]] = ContextVar("crossroads_action_failures", default=None)


class ActionFailed(RuntimeError):
    """An action of this turn raised; the cause is attached (`__cause__`)."""


def _record_failures(cls: Any) -> None:
    from rasa.core.actions.action import ActionExecutionRejection

    run = cls.run

    async def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await run(self, *args, **kwargs)
        except ActionExecutionRejection:
            raise
        except Exception as exc:
            failures = _failures.get()
            if failures is not None:
                failures.append(exc)
            raise

    cls.run = guarded


def failing_turns(run_action: Any) -> Any:
    """Wrap `MessageProcessor._run_action` (which swallows an action's exception) so that the turn raises."""

    async def run_action_or_fail(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = _failures.set([])
        try:
            result = await run_action(self, *args, **kwargs)
            failures = _failures.get() or []
        finally:
            _failures.reset(token)
        if failures:
            raise ActionFailed(f"an action failed: {type(failures[0]).__name__}") from failures[0]
        return result

    return run_action_or_fail


def _fail_turns_on_action_errors() -> None:
    from rasa.core.actions import action as rasa_action
    from rasa.core.processor import MessageProcessor

    for cls in (rasa_action.ActionBotResponse, rasa_action.RemoteAction):
        _record_failures(cls)
    MessageProcessor._run_action = failing_turns(MessageProcessor._run_action)


class TrackerStoreUnavailable(ConnectionError):
    """The tracker store could not be read or written (by its class, a 503 in bot/rasa_channel.py)."""


def _raise_read(self: Any, error: Exception) -> None:
    raise TrackerStoreUnavailable(f"tracker store read failed: {type(error).__name__}") from error


def _raise_write(self: Any, error: Exception) -> None:
    raise TrackerStoreUnavailable(f"tracker store write failed: {type(error).__name__}") from error


def apply() -> None:
    global _applied
    if _applied:
        return
    from rasa.core.tracker_store import FailSafeTrackerStore

    FailSafeTrackerStore.on_tracker_store_retrieve_error = _raise_read
    FailSafeTrackerStore.on_tracker_store_error = _raise_write
    _fail_turns_on_action_errors()

    from rasa.shared.core import events as rasa_events

    find_event_class = rasa_events.Event.resolve_by_type
    event_classes: Dict[str, Any] = {}

    def resolve_by_type(type_name: Text, default: Any = None) -> Any:
        found = event_classes.get(type_name)
        if found is None:
            found = find_event_class(type_name, default)
            if found is not None and found is not default:
                event_classes[type_name] = found
        return found

    rasa_events.Event.resolve_by_type = staticmethod(resolve_by_type)

    from jsonschema import ValidationError
    from jsonschema.validators import validator_for
    from rasa.core.actions import action as rasa_action

    original = rasa_action.RemoteAction._validate_action_result
    validators: Dict[int, Any] = {}

    def validate_action_result(self: "rasa_action.RemoteAction", result: Dict[Text, Any]) -> bool:
        schema = self.action_response_format_spec()
        key = hash(repr(schema))
        validator = validators.get(key)
        if validator is None:
            cls = validator_for(schema)
            cls.check_schema(schema)
            validator = validators[key] = cls(schema)
        try:
            validator.validate(result)
            return True
        except ValidationError:
            return original(self, result)  # Rasa's own message for the error

    rasa_action.RemoteAction._validate_action_result = validate_action_result
    _applied = True
    log.debug("rasa patches applied")
