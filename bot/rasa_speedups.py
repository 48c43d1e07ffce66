"""One fix to Rasa 3.6's hot path, applied in the Rasa server process (bot/rasa_channel.py imports it).

`RemoteAction._validate_action_result` calls `jsonschema.validate(result, schema)` for every answer of
the action server. `jsonschema.validate` checks the schema itself first, every time: under load, py-spy
showed 30% of a Rasa replica's CPU there (docs/decisions/0009-performance.md). Here the schema is
checked once and the compiled validator is reused; results are validated exactly as before and a bad
answer still raises `ValidationError` with Rasa's explanation.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Text

log = logging.getLogger(__name__)
_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
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
    log.debug("rasa speed-ups applied")
