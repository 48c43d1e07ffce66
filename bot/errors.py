"""Errors raised by the gateway.

Exception tree::

    CrossroadsError
    ├── ConfigError            a setting is missing or malformed (raised at start)
    ├── ContentError           a content file is missing, malformed or incomplete
    ├── InputRejected          user input the service will not process (empty, too long, ...)
    └── RasaError              the Rasa server could not be reached or answered badly
        └── RasaUnavailable    connection refused / timed out: retry later
"""


class CrossroadsError(Exception):
    """Base class of every error raised on purpose by the gateway."""


class ConfigError(CrossroadsError):
    """A setting is missing or has a value of the wrong kind."""


class ContentError(CrossroadsError):
    """A content file is missing, malformed or incomplete."""


class InputRejected(CrossroadsError):
    """User input that is not processed; `reason` names the response to send instead."""

    def __init__(self, reason: str, response: str, **arguments: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.response = response
        self.arguments = arguments


class RasaError(CrossroadsError):
    """The Rasa server answered with an error or something unreadable."""


class RasaUnavailable(RasaError):
    """The Rasa server could not be reached (down, starting, or timed out)."""
