"""The service directory: import from data/services/*.yml, resolve places, look services up.

Places are resolved with CLDR data (through Babel): country names in every served language, and
the localised names of CLDR's exemplar cities ("Bruxelles", "Brüssel", "بروكسل", "ብራስልስ" →
Brussels, BE). Cities that CLDR does not name are matched by the English names in our data.
Misspellings of Latin-script names are matched by similarity. The format is in docs/services.md.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from sqlalchemy import select

from bot.db import Database, Service
from bot.errors import ContentError
from bot.languages import contains_latin_word, content_languages, normalise
from bot.settings import ROOT
from bot.sources import load_yaml, require_source

SERVICES_DIR = ROOT / "data" / "services"
SERVICE_TYPES = ("legal_aid", "psychosocial", "medical", "shelter", "return_counselling", "reintegration",
                 "family_tracing", "anti_trafficking", "emergency")
INTERNATIONAL = "international"
NEEDS_FILE = "needs.yml"  # words that name a need, per language (not a list of services)
STALE_AFTER_DAYS = 365
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,80}$")
FIELDS = ("organisation", "types", "city", "address", "phone", "website", "languages", "opening_hours", "cost",
          "confidentiality", "source_name", "source_url", "source_year", "source_accessed", "verified", "country")


# -- import -----------------------------------------------------------------------------------
def _entry(path: Path, country: str, raw: Any, index: int) -> Dict[str, Any]:
    where = f"{path.name}: entry {raw.get('id', index) if isinstance(raw, dict) else index}"
    if not isinstance(raw, dict):
        raise ContentError(f"{where}: expected a mapping")
    if not isinstance(raw.get("id"), str) or not _ID.match(raw["id"]):
        raise ContentError(f"{where}: 'id' must be lower-case letters, digits and '-'")
    if not raw.get("organisation"):
        raise ContentError(f"{where}: 'organisation' is required")
    types = raw.get("types") or []
    unknown = [t for t in types if t not in SERVICE_TYPES]
    if not types or unknown:
        raise ContentError(f"{where}: 'types' must be some of {', '.join(SERVICE_TYPES)} (got {unknown or 'none'})")
    source = raw.get("source")
    require_source(f"{where}: 'source'", source)
    verified = raw.get("verified")  # None: nobody has checked it against the organisation yet
    if isinstance(verified, str):
        try:
            verified = dt.date.fromisoformat(verified)
        except ValueError:
            raise ContentError(f"{where}: 'verified' must be a date (YYYY-MM-DD) or empty") from None
    if verified is not None and not isinstance(verified, dt.date):
        raise ContentError(f"{where}: 'verified' must be a date (YYYY-MM-DD) or empty")
    languages = raw.get("languages") or []
    return {
        "id": raw["id"], "country": country, "organisation": str(raw["organisation"]),
        "types": ",".join(sorted(set(types))), "city": raw.get("city") or None,
        "address": raw.get("address") or None, "phone": _text(raw.get("phone")), "website": raw.get("website") or None,
        "languages": ",".join(sorted(set(map(str, languages)))), "opening_hours": raw.get("opening_hours") or None,
        "cost": raw.get("cost") or None, "confidentiality": raw.get("confidentiality") or None,
        "source_name": str(source["name"]), "source_url": source.get("url") or None,
        "source_year": source.get("year"), "source_accessed": source.get("accessed"), "verified": verified,
    }


def _text(value: Any) -> Optional[str]:
    return None if value in (None, "") else str(value)


def read_files(directory: Path = SERVICES_DIR) -> List[Dict[str, Any]]:
    """Every entry of every file, checked; raises ContentError naming the file and the entry."""
    entries, seen = [], {}
    for path in sorted(directory.glob("*.yml")):
        if path.name == NEEDS_FILE:
            continue
        data = load_yaml(path)
        if not isinstance(data, dict) or data.get("country") != path.stem or not isinstance(data.get("services"), list):
            raise ContentError(f"{path.name}: expected 'country: {path.stem}' and a list 'services'")
        for index, raw in enumerate(data["services"]):
            entry = _entry(path, path.stem, raw, index)
            if entry["id"] in seen:
                raise ContentError(f"{path.name}: entry {entry['id']}: id already used in {seen[entry['id']]}")
            seen[entry["id"]] = path.name
            entries.append(entry)
    return entries


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0


def import_services(db: Database, directory: Path = SERVICES_DIR) -> ImportReport:
    """Make the table match the files: add, update, remove. Running it twice changes nothing."""
    entries = {e["id"]: e for e in read_files(directory)}
    report = ImportReport()
    with db.session() as s:
        existing = {row.id: row for row in s.scalars(select(Service))}
        for sid, entry in entries.items():
            row = existing.get(sid)
            if row is None:
                s.add(Service(**entry))
                report.added += 1
            elif any(getattr(row, f) != entry[f] for f in FIELDS):
                for f in FIELDS:
                    setattr(row, f, entry[f])
                report.updated += 1
            else:
                report.unchanged += 1
        for sid, row in existing.items():
            if sid not in entries:
                s.delete(row)
                report.removed += 1
    return report


# -- needs ------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _need_words(directory: Path = SERVICES_DIR) -> Tuple[Tuple[str, str], ...]:
    """(normalised word or stem, service type) for every language in needs.yml."""
    path = directory / NEEDS_FILE
    if not path.exists():
        return ()
    data = load_yaml(path) or {}
    pairs = set()
    for types in data.values():
        for service_type, words in (types or {}).items():
            if service_type in SERVICE_TYPES:
                pairs.update((normalise(str(w)), service_type) for w in words or [] if str(w).strip())
    return tuple(sorted(pairs))


def detect_needs(text: str, directory: Path = SERVICES_DIR) -> List[str]:
    """The service types a message asks for ("a doctor in Brussels" → medical), in any language."""
    norm = normalise(text)[:2000]
    words = re.findall(r"\w+", norm)
    found = set()
    for stem, service_type in _need_words(directory):
        if " " in stem:
            if stem in norm:
                found.add(service_type)
        elif _is_latin(stem):
            if any(w.startswith(stem) for w in words):
                found.add(service_type)
        elif stem in norm:  # Arabic, Persian, Ge'ez: prefixes and suffixes attach to words
            found.add(service_type)
    return sorted(found)


# -- places -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    country: str  # ISO code, lower case
    city: Optional[str]  # English name, or None for the whole country


@lru_cache(maxsize=1)
def _place_names() -> Tuple[Tuple[str, Place], ...]:
    from babel import Locale
    import pytz

    zone_country = {zone: code.lower() for code, zones in pytz.country_timezones.items() for zone in zones}
    locales = sorted(set(content_languages()) | {"en", "de", "nl", "it"})
    names: Dict[str, Place] = {}
    for code in locales:
        try:
            locale = Locale.parse(code)
        except Exception:  # pragma: no cover - a content language Babel does not know
            continue
        for territory, name in locale.territories.items():
            if len(territory) == 2 and territory.isalpha():
                names.setdefault(normalise(name), Place(territory.lower(), None))
        for zone, info in locale.time_zones.items():
            city = info.get("city") if hasattr(info, "get") else None
            country = zone_country.get(zone)
            if country:
                english = zone.split("/")[-1].replace("_", " ")
                names.setdefault(normalise(english), Place(country, english))
                if city:
                    names.setdefault(normalise(city), Place(country, english))
    return tuple(sorted(names.items(), key=lambda item: -len(item[0])))


@lru_cache(maxsize=1)
def country_codes() -> frozenset:
    """Every ISO 3166-1 alpha-2 code CLDR names, lower case."""
    from babel import Locale

    return frozenset(code.lower() for code in Locale.parse("en").territories if len(code) == 2 and code.isalpha())


def _data_city_names(db: Database) -> List[Tuple[str, Place]]:
    with db.session() as s:
        rows = s.execute(select(Service.city, Service.country).where(Service.city.is_not(None)).distinct()).all()
    return [(normalise(city), Place(country, city)) for city, country in rows if country != INTERNATIONAL]


_INFLECTED = re.compile(r"^[\u0400-\u04ff\u10a0-\u10ff ]+$")  # Cyrillic or Georgian names
_FINAL_VOWELS = set("аяиыеоьйიაეო")


@lru_cache(maxsize=1)
def _static_candidates() -> Tuple[Tuple[Tuple[str, Place, bool], ...], Dict[str, Place]]:
    """CLDR place names with whether each is Latin script (worked out once: it was most of a look-up's
    time), and the Latin ones of 5+ letters for the misspelling fallback."""
    names = [(name, place, _is_latin(name)) for name, place in _place_names() if len(name) >= 3]
    # Russian and Georgian inflect place names ("в Германии", "ბრიუსელში"): their stem without the
    # final vowel is looked for too (names of 6+ letters only, so that stems stay specific).
    known = {name for name, _, _ in names}
    for name, place, latin in list(names):
        if not latin and len(name) >= 6 and _INFLECTED.match(name) and name[-1] in _FINAL_VOWELS \
                and name[:-1] not in known:
            names.append((name[:-1], place, False))
    names.sort(key=lambda item: -len(item[0]))
    return tuple(names), {name: place for name, place, latin in names if latin and len(name) >= 5}


def resolve_place(text: str, db: Optional[Database] = None) -> Optional[Place]:
    """The city (preferred) or country named in `text`, in any served language; None if none."""
    norm = normalise(text)[:500]
    static, static_latin = _static_candidates()
    candidates = list(static)
    latin = static_latin
    if db is not None:
        own = [(name, place, _is_latin(name)) for name, place in _data_city_names(db) if len(name) >= 3]
        candidates = own + candidates
        latin = {**static_latin, **{name: place for name, place, is_latin in own if is_latin and len(name) >= 5}}
    found: List[Place] = []
    for name, place, is_latin in candidates:
        if is_latin:
            if contains_latin_word(norm, name):
                found.append(place)
        elif name in norm:
            found.append(place)
    if not found:
        # Misspellings ("Bruxels"): only for words that are not ordinary words people write to us
        # ("services" must not become "Servie", Serbia in Dutch), and with the same first letter.
        ordinary = _ordinary_words()
        for word in re.findall(r"[a-z]{5,}", norm):
            if word in ordinary:
                continue
            close = [c for c in difflib.get_close_matches(word, latin, n=3, cutoff=0.84) if c[0] == word[0]]
            if close:
                found.append(latin[close[0]])
                break
    cities = [p for p in found if p.city]
    return cities[0] if cities else (found[0] if found else None)


@lru_cache(maxsize=1)
def _ordinary_words() -> frozenset:
    """Every word of our training examples (all languages), minus the place names among them."""
    from bot.languages import load_nlu_examples

    words = {w for texts in load_nlu_examples().values() for t in texts for w in re.findall(r"[a-z]{5,}", normalise(t))}
    return frozenset(words - {name for name, _ in _place_names()})


def _is_latin(s: str) -> bool:
    return all(ord(c) < 0x0250 for c in s)


# -- look-up ----------------------------------------------------------------------------------
@dataclass
class Found:
    service: Service
    scope: str  # city | country | international
    stale: bool  # not verified in the last 12 months: show "please check"


def _freshness(row: Service) -> int:
    """How recent our information is: the verification date, else the source's (or access) year."""
    if row.verified:
        return row.verified.toordinal()
    year = row.source_year or row.source_accessed
    return dt.date(year, 1, 1).toordinal() if year else 0


def find_services(db: Database, place: Optional[Place], needs: Sequence[str] = (), language: Optional[str] = None,
                  limit: int = 3, today: Optional[dt.date] = None) -> List[Found]:
    """The best few services for a place and needs: the city first, then country-wide services,
    then international organisations. Services speaking `language` come first within each group."""
    today = today or dt.date.today()
    needs = [n for n in needs if n in SERVICE_TYPES]
    with db.session() as s:
        rows = list(s.scalars(select(Service)))
    def matches(row: Service) -> bool:
        return not needs or bool(set(row.types.split(",")) & set(needs))
    groups: List[Tuple[str, Iterable[Service]]] = []
    if place is not None:
        if place.city:
            groups.append(("city", [r for r in rows if r.country == place.country and r.city == place.city]))
        groups.append(("country", [r for r in rows if r.country == place.country and not r.city]))
    groups.append(("international", [r for r in rows if r.country == INTERNATIONAL]))
    results: List[Found] = []
    for scope, candidates in groups:
        ranked = sorted((r for r in candidates if matches(r)),
                        key=lambda r: (language not in (r.languages or "").split(","), -_freshness(r), r.id))
        for row in ranked:
            stale = row.verified is None or (today - row.verified).days > STALE_AFTER_DAYS
            results.append(Found(row, scope, stale))
            if len(results) >= limit:
                return results
    return results


# -- presenting results -----------------------------------------------------------------------
def place_name(place: Place, language: str) -> str:
    """The place in the person's language (CLDR), else its English name."""
    from babel import Locale
    import pytz

    try:
        locale = Locale.parse(language)
    except Exception:
        locale = Locale.parse("en")
    if place.city:
        for zone in pytz.country_timezones.get(place.country.upper(), []):
            if zone.split("/")[-1].replace("_", " ") == place.city:
                info = locale.time_zones.get(zone)
                city = info.get("city") if info is not None and hasattr(info, "get") else None
                return city or place.city
        return place.city
    return locale.territories.get(place.country.upper(), place.country.upper())


def format_service(found: Found, content: Any, language: str) -> str:
    """One service as a short block for a phone screen; labels in the person's language."""
    s = found.service
    types = ", ".join(content.render(f"utter_service_type_{t}", language).text for t in s.types.split(",") if t)
    lines = [f"• {s.organisation}", f"  {types}"]
    for value in (s.address, s.phone and f"☎ {s.phone}", s.website, s.opening_hours, s.cost):
        if value:
            lines.append(f"  {value}")
    when = str(s.source_year) if s.source_year else \
        content.render("utter_source_accessed", language, {"year": s.source_accessed}).text
    source = content.render("utter_service_source", language).text
    lines.append(f"  {source}: {s.source_name} ({when})")
    if found.stale:
        lines.append(f"  ⚠ {content.render('utter_service_please_check', language).text}")
    return "\n".join(lines)
