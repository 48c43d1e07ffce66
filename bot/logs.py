"""Log set-up of the gateway: text for development, one JSON object per line in production.

Log calls in this project carry ids and codes only, never message text (docs/privacy.md); JSON does
not change that, it only makes the lines machine-readable (LOG_FORMAT=json).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        if record.exc_info:
            # The exception's type and where it happened; its message may quote data, so it is not kept.
            kind, _, trace = record.exc_info
            frames = []
            while trace is not None:
                frames.append(f"{trace.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{trace.tb_lineno}")
                trace = trace.tb_next
            entry["error"] = kind.__name__ if kind else None
            entry["at"] = frames[-3:]
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    if fmt != "json":
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own loggers write through the root handler too
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
