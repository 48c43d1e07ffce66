"""What every data file with facts shares: a source needs a name and a year, and a YAML file that
does not parse is reported with its name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.errors import ContentError


def is_year(value: Any) -> bool:
    return isinstance(value, int) and 1900 <= value <= 2100


def has_year(source: Any) -> bool:
    """A source's own year, or (when it shows none) the year it was accessed."""
    return isinstance(source, dict) and bool(source.get("name")) and \
        (is_year(source.get("year")) or is_year(source.get("accessed")))


def require_source(where: str, source: Any) -> None:
    if not has_year(source):
        raise ContentError(f"{where}: a source needs a name and a year (or the year it was accessed)")


def load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ContentError(f"{path.name}: not valid YAML: {exc}") from exc
