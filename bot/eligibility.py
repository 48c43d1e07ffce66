"""From the eligibility form's answers to localised result messages (used by actions/eligibility.py).

Kept out of the action so it is tested without Rasa: facts from slot values, programme texts in the
person's language (data/programmes/i18n/<lang>.yml, English when missing), country names from CLDR.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import yaml

from bot.content import ContentStore
from bot.programmes import CANNOT_TELL, FACTS, PROGRAMMES_DIR, Assessment, Programme

FORM_SLOTS = ("country_of_stay", "nationality", "situation", "own_funds", "assisted_before", "in_detention",
              "prison_sentence", "children")
YES_NO = ("own_funds", "assisted_before", "in_detention", "children")
# EU, EEA and Swiss nationals (membership as of 2026): programmes often exclude them.
EU_EEA_CH = frozenset("at be bg hr cy cz dk ee fi fr de gr hu ie it lv lt lu mt nl pl pt ro sk si es se is li no ch".split())


def facts_from_slots(slots: Mapping[str, Any]) -> Dict[str, Any]:
    """Slot values ("yes"/"no"/"unknown", codes) → the engine's facts (unknown = absent)."""
    facts: Dict[str, Any] = {}
    for slot in FORM_SLOTS:
        value = slots.get(slot)
        if value in (None, "", "unknown"):
            continue
        if slot in YES_NO:
            facts[slot] = value == "yes"
        else:
            facts[slot] = value
    nationality = facts.get("nationality")
    if isinstance(nationality, str) and len(nationality) == 2:
        facts["eu_national"] = nationality in EU_EEA_CH
    return facts


def country_name(code: str, language: str) -> str:
    from babel import Locale

    try:
        return Locale.parse(language).territories.get(code.upper(), code.upper())
    except Exception:
        return code.upper()


@lru_cache(maxsize=16)
def _translations(language: str, directory: Path = PROGRAMMES_DIR / "i18n") -> Dict[str, Any]:
    path = directory / f"{language}.yml"
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("programmes") or {}


def _texts(programme: Programme, language: str) -> Dict[str, List[str]]:
    english = {
        "summary": [programme.summary],
        "reasons": [r.reason for r in programme.rules],
        "includes": [str(i.get("item", "")) for i in programme.includes],
        "conditions": list(programme.conditions),
        "consequences": list(programme.consequences),
    }
    own = _translations(language).get(programme.id) or {}
    result = {}
    for key, values in english.items():
        translated = own.get(key)
        if key == "summary":
            translated = [translated] if isinstance(translated, str) else None
        result[key] = translated if isinstance(translated, list) and len(translated) == len(values) else values
    return result


def money(amount: Any, currency: str, language: str) -> str:
    """An amount as people of that language write it (CLDR): "1 000 €", "€1,000", "١٬٠٠٠ €"…"""
    from babel import Locale
    from babel.numbers import format_currency

    try:
        pattern = Locale.parse(language).currency_formats["standard"].pattern
        whole = pattern.split(";")[0].replace(".00", "").replace(".##", "")  # our amounts are whole numbers
        return format_currency(amount, currency, format=whole, locale=language, currency_digits=False)
    except Exception:
        return f"{amount} {currency}"


def _includes(programme: Programme, items: List[str], language: str, content: ContentStore) -> List[str]:
    lines = []
    for raw, text in zip(programme.includes, items):
        if "amount" in raw:
            per = content.render(f"utter_per_{raw['per']}", language).text if content.has(f"utter_per_{raw['per']}") \
                else str(raw["per"])
            lines.append(f"{text}: {money(raw['amount'], raw['currency'], language)} {per}")
        else:
            lines.append(text)
    return lines


def _bullets(lines: List[str]) -> str:
    """A list under its label: starts on a new line ("Why:\n• …\n• …")."""
    items = "\n".join(f"• {line.strip()}" for line in lines if line and line.strip())
    return "\n" + items if items else "—"


def _source_line(source: Mapping[str, Any], language: str, content: ContentStore) -> str:
    if source.get("year"):
        when = str(source["year"])
    else:
        when = content.render("utter_source_accessed", language, {"year": source.get("accessed")}).text
    return f"{source['name']} ({when})" + (f" {source['url']}" if source.get("url") else "")


def result_messages(assessments: List[Assessment], country: str, language: str, content: ContentStore) -> List[Dict[str, Any]]:
    """The responses (name + arguments) that tell the person the result, in order."""
    messages: List[Dict[str, Any]] = [{"response": "utter_eligibility_result_header",
                                       "country": country_name(country, language) if country else "—"}]
    if not country:  # the person preferred not to say: who assisted return usually serves, in general
        messages[0] = {"response": "utter_eligibility_general"}
    elif not assessments:
        messages[0] = {"response": "utter_eligibility_no_programmes", "country": country_name(country, language)}
    for assessment in assessments:
        programme = assessment.programme
        texts = _texts(programme, language)
        reasons = [texts["reasons"][programme.rules.index(rule)] for rule in assessment.reasons]
        missing = ""
        if assessment.outcome == CANNOT_TELL:
            if not programme.rules:
                missing = content.render("utter_missing_rules", language).text
            else:
                labels = [content.render(f"utter_fact_{fact}", language).text for fact in assessment.unknown
                          if fact in FACTS]
                missing = content.render("utter_missing_answers", language, {"facts": ", ".join(labels)}).text
        messages.append({
            "response": f"utter_programme_{assessment.outcome}",
            "programme": programme.name,
            "operator": (_translations(language).get(programme.id) or {}).get("operator") or programme.operator,
            "reasons": _bullets(reasons),
            "includes": _bullets(_includes(programme, texts["includes"], language, content)),
            "conditions": _bullets(texts["conditions"]),
            "consequences": _bullets(texts["consequences"]),
            "sources": "; ".join(_source_line(s, language, content) for s in programme.sources),
            "missing": missing,
        })
    messages.append({"response": "utter_eligibility_alternatives"})
    return messages
