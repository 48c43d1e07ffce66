"""Return programmes as data (data/programmes/<country>.yml) and the rules engine over them.

The engine never decides for anyone: it says "likely eligible", "likely not eligible" or "cannot
tell", always with the reasons and their sources, what the programme includes, its conditions
and consequences. The file format is documented in docs/programmes.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from bot.errors import ContentError
from bot.sources import load_yaml, require_source
from bot.settings import ROOT

PROGRAMMES_DIR = ROOT / "data" / "programmes"

SITUATIONS = ("asylum_pending", "asylum_refused", "appeal_pending", "irregular", "trafficking_victim",
              "protection_status", "other")
FACTS: Dict[str, Any] = {
    "country_of_stay": str,
    "nationality": str,
    "situation": SITUATIONS,
    "own_funds": bool,
    "assisted_before": bool,
    "in_detention": bool,
    "prison_sentence": ("none", "under_12_months", "12_months_or_more"),
    "children": bool,
    "eu_national": bool,
    "visa_required": bool,
}
EFFECTS = ("requires", "excludes")
LIKELY_ELIGIBLE, LIKELY_NOT_ELIGIBLE, CANNOT_TELL = "likely_eligible", "likely_not_eligible", "cannot_tell"


@dataclass(frozen=True)
class Rule:
    fact: str
    effect: str
    reason: str
    source: Mapping[str, Any]
    values: tuple

    def holds(self, value: Any) -> bool:
        return value in self.values


@dataclass
class Programme:
    id: str
    country: str
    name: str
    operator: str
    summary: str
    rules: List[Rule]
    includes: List[Dict[str, Any]]
    conditions: List[str]
    consequences: List[str]
    contact: Dict[str, Any]
    sources: List[Dict[str, Any]]


@dataclass
class Assessment:
    programme: Programme
    outcome: str
    reasons: List[Rule] = field(default_factory=list)  # rules that decided the outcome
    unknown: List[str] = field(default_factory=list)  # facts we would need to know


def _fact_values(where: str, raw: Mapping[str, Any]) -> tuple:
    fact = raw.get("fact")
    if fact not in FACTS:
        raise ContentError(f"{where}: unknown fact {fact!r} (known: {', '.join(FACTS)})")
    if ("in" in raw) == ("equals" in raw):
        raise ContentError(f"{where}: a rule needs exactly one of 'in' or 'equals'")
    values = tuple(raw["in"]) if "in" in raw else (raw["equals"],)
    allowed = FACTS[fact]
    for value in values:
        ok = isinstance(value, allowed) if isinstance(allowed, type) else value in allowed
        if not ok:
            raise ContentError(f"{where}: {value!r} is not a valid value of {fact}")
    return values


def load_country(path: Path) -> List[Programme]:
    data = load_yaml(path)
    if not isinstance(data, dict) or data.get("country") != path.stem or not isinstance(data.get("programmes"), list):
        raise ContentError(f"{path}: expected 'country: {path.stem}' and a list 'programmes'")
    programmes = []
    for index, raw in enumerate(data["programmes"]):
        where = f"{path}: programme {raw.get('id', index)!r}"
        for key in ("id", "name", "operator", "summary"):
            if not raw.get(key):
                raise ContentError(f"{where}: '{key}' is required")
        if not raw.get("sources"):
            raise ContentError(f"{where}: 'sources' is required")
        for source in raw["sources"]:
            require_source(where, source)
        rules = []
        for number, rule in enumerate(raw.get("rules") or [], start=1):
            rwhere = f"{where} rule {number}"
            if rule.get("effect") not in EFFECTS:
                raise ContentError(f"{rwhere}: effect must be one of {EFFECTS}")
            if not rule.get("reason"):
                raise ContentError(f"{rwhere}: 'reason' is required")
            require_source(rwhere, rule.get("source"))
            rules.append(Rule(rule["fact"], rule["effect"], rule["reason"], rule["source"], _fact_values(rwhere, rule)))
        for item in raw.get("includes") or []:
            if "amount" in item and not (item.get("currency") and item.get("per")):
                raise ContentError(f"{where}: an amount needs a currency and 'per'")
        programmes.append(Programme(
            id=raw["id"], country=path.stem, name=raw["name"], operator=raw["operator"], summary=raw["summary"],
            rules=rules, includes=list(raw.get("includes") or []), conditions=list(raw.get("conditions") or []),
            consequences=list(raw.get("consequences") or []), contact=dict(raw.get("contact") or {}),
            sources=list(raw["sources"]),
        ))
    return programmes


def load_all(directory: Path = PROGRAMMES_DIR) -> Dict[str, List[Programme]]:
    """Every country file, checked; raises ContentError naming the file and the entry."""
    return {path.stem: load_country(path) for path in sorted(directory.glob("*.yml"))}


def assess(programme: Programme, facts: Mapping[str, Any]) -> Assessment:
    """Apply every rule: a failed rule excludes; an unknown fact makes the answer 'cannot tell'.
    A programme whose rules our sources do not give is always 'cannot tell' (never 'eligible')."""
    if not programme.rules:
        return Assessment(programme, CANNOT_TELL, [], [])
    failed, unknown, met = [], [], []
    for rule in programme.rules:
        value = facts.get(rule.fact)
        if value is None:
            unknown.append(rule.fact)
            continue
        holds = rule.holds(value)
        if (rule.effect == "requires" and not holds) or (rule.effect == "excludes" and holds):
            failed.append(rule)
        else:
            met.append(rule)
    if failed:
        return Assessment(programme, LIKELY_NOT_ELIGIBLE, failed, sorted(set(unknown)))
    if unknown:
        return Assessment(programme, CANNOT_TELL, met, sorted(set(unknown)))
    return Assessment(programme, LIKELY_ELIGIBLE, met, [])


def assess_country(facts: Mapping[str, Any], programmes: Optional[Dict[str, List[Programme]]] = None) -> List[Assessment]:
    """Assessments for every programme of the person's country of stay; [] when we have no data
    for that country (the caller then gives general IOM information and offers a counsellor)."""
    programmes = load_all() if programmes is None else programmes
    country = str(facts.get("country_of_stay") or "").lower()
    return [assess(p, facts) for p in programmes.get(country, [])]
