"""Answers in every language: `data/content/<lang>.yml`, keyed by response name.

The gateway serves them to Rasa through the NLG endpoint, so a content fix needs no retraining.
A response missing in a language falls back to English with a short note
(`utter_missing_translation`). `coverage()` reports per-language completeness against English.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set

import yaml

from bot.errors import ContentError
from bot.settings import ROOT
from bot.sources import has_year

FALLBACK_LANGUAGE = "en"
LANGUAGE_MENU = "utter_language_menu"
# Responses that always carry the language buttons (built from the content files, not written by hand).
LANGUAGE_BUTTON_RESPONSES = frozenset({LANGUAGE_MENU, "utter_language_unknown"})
MISSING_NOTE = "utter_missing_translation"
BUTTON_TITLE_MAX = 20
# A figure, percentage, amount or phone number in an answer needs a recorded source.
_FIGURE = re.compile(r"\d")
_FORMATTER = string.Formatter()


@dataclass
class LanguageContent:
    code: str
    name: str
    direction: str
    native_review: bool
    responses: Dict[str, Dict[str, Any]]
    path: Path
    canned: List[Dict[str, str]] = field(default_factory=list)  # counsellors' ready-made replies
    labels: Dict[str, str] = field(default_factory=dict)  # short words that fill answers' placeholders


@dataclass
class Rendered:
    """One answer ready for a channel."""

    text: str
    buttons: List[Dict[str, str]] = field(default_factory=list)
    language: str = FALLBACK_LANGUAGE
    direction: str = "ltr"
    fallback: bool = False

    def as_nlg(self) -> Dict[str, Any]:
        """The body Rasa expects from an NLG endpoint (rasa.core.nlg.callback.nlg_response_format_spec)."""
        return {"text": self.text, "buttons": self.buttons, "image": None, "elements": [], "attachment": None}


class _SafeArgs(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(template: str, arguments: Mapping[str, Any]) -> str:
    return _FORMATTER.vformat(template, (), _SafeArgs({k: v for k, v in arguments.items() if v is not None}))


class ContentStore:
    """All content files, loaded once; `render` picks the language and falls back to English."""

    def __init__(self, content_dir: Path = ROOT / "data" / "content") -> None:
        self.content_dir = Path(content_dir)
        self.languages: Dict[str, LanguageContent] = {}
        paths = sorted(self.content_dir.glob("*.yml"))
        if not paths:
            raise ContentError(f"no content files in {self.content_dir}")
        for path in paths:
            self.languages[path.stem] = self._load(path)
        if FALLBACK_LANGUAGE not in self.languages:
            raise ContentError(f"{self.content_dir}/{FALLBACK_LANGUAGE}.yml is required (fallback)")

    @staticmethod
    def _load(path: Path) -> LanguageContent:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ContentError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("responses"), dict):
            raise ContentError(f"{path}: expected a mapping with 'responses'")
        if data.get("language") != path.stem:
            raise ContentError(f"{path}: 'language' must be {path.stem!r}")
        if data.get("direction") not in {"ltr", "rtl"}:
            raise ContentError(f"{path}: 'direction' must be ltr or rtl")
        for key, value in data["responses"].items():
            if not isinstance(value, dict) or not isinstance(value.get("text"), str) or not value["text"].strip():
                raise ContentError(f"{path}: response {key!r} needs a non-empty 'text'")
        canned = data.get("canned_replies") or []
        if not isinstance(canned, list) or not all(
                isinstance(c, dict) and all(isinstance(c.get(k), str) and c[k].strip() for k in ("id", "title", "text"))
                for c in canned):
            raise ContentError(f"{path}: canned_replies must be a list of {{id, title, text}}")
        labels = data.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                   for k, v in labels.items()):
            raise ContentError(f"{path}: labels must map names to non-empty text")
        return LanguageContent(
            code=path.stem,
            name=str(data.get("name") or path.stem),
            direction=data["direction"],
            native_review=bool(data.get("native_review", False)),
            responses=data["responses"],
            path=path,
            canned=[{"id": c["id"], "title": c["title"], "text": c["text"]} for c in canned],
            labels=dict(labels),
        )

    def label(self, key: str, language: Optional[str], **arguments: Any) -> str:
        """A short label in `language` (English when that language lacks it)."""
        text = self.languages[self.resolve_language(language)].labels.get(key) \
            or self.languages[FALLBACK_LANGUAGE].labels.get(key)
        if text is None:
            raise ContentError(f"unknown label {key!r}")
        return _fill(text, arguments)

    def canned_replies(self, language: Optional[str]) -> List[Dict[str, str]]:
        """The counsellors' ready-made replies in `language` (English for any it lacks)."""
        own = {c["id"]: c for c in self.languages[self.resolve_language(language)].canned}
        return [dict(own.get(c["id"], c), language=self.resolve_language(language) if c["id"] in own
                     else FALLBACK_LANGUAGE) for c in self.languages[FALLBACK_LANGUAGE].canned]

    # -- rendering -------------------------------------------------------------------------
    def resolve_language(self, language: Optional[str]) -> str:
        return language if language in self.languages else FALLBACK_LANGUAGE

    def has(self, response: str) -> bool:
        return response in self.languages[FALLBACK_LANGUAGE].responses

    def render(self, response: str, language: Optional[str], arguments: Optional[Mapping[str, Any]] = None) -> Rendered:
        """The response in `language`, or in English with a note when that language lacks it."""
        lang = self.resolve_language(language)
        arguments = dict(arguments or {})
        content = self.languages[lang]
        entry = content.responses.get(response)
        fallback = False
        if entry is None:
            entry = self.languages[FALLBACK_LANGUAGE].responses.get(response)
            if entry is None:
                raise ContentError(f"unknown response {response!r}")
            fallback = lang != FALLBACK_LANGUAGE
        arguments.setdefault("language_name", content.name)
        text = _fill(entry["text"], arguments)
        if fallback:
            note = content.responses.get(MISSING_NOTE) or self.languages[FALLBACK_LANGUAGE].responses[MISSING_NOTE]
            text = f"{note['text']}\n\n{text}"
        buttons = [{"title": _fill(str(b["title"]), arguments), "payload": str(b["payload"])}
                   for b in entry.get("buttons") or []]
        if response in LANGUAGE_BUTTON_RESPONSES:
            buttons = self.language_buttons()
        direction = "ltr" if fallback else content.direction
        return Rendered(text=text, buttons=buttons, language=lang, direction=direction, fallback=fallback)

    def language_buttons(self) -> List[Dict[str, str]]:
        return [{"title": c.name, "payload": f'/change_language{{"language":"{c.code}"}}'}
                for c in self.languages.values()]

    def allowed_payloads(self) -> Set[str]:
        """Every button payload the assistant can show: the only `/` messages the gateway forwards."""
        payloads = {b["payload"] for b in self.language_buttons()}
        for content in self.languages.values():
            for entry in content.responses.values():
                payloads.update(str(b["payload"]) for b in entry.get("buttons") or [])
        return payloads

    # -- checks ----------------------------------------------------------------------------
    def coverage(self) -> Dict[str, Dict[str, Any]]:
        """Per language: share of English responses present, the missing keys, and problems."""
        reference = self.languages[FALLBACK_LANGUAGE].responses
        report = {}
        for code, content in self.languages.items():
            ref_labels = self.languages[FALLBACK_LANGUAGE].labels
            missing = sorted(set(reference) - set(content.responses)) + \
                sorted(f"labels.{k}" for k in set(ref_labels) - set(content.labels))
            extra = sorted(set(content.responses) - set(reference)) + \
                sorted(f"labels.{k}" for k in set(content.labels) - set(ref_labels))
            total = len(reference) + len(ref_labels)
            report[code] = {
                "name": content.name,
                "native_review": content.native_review,
                "present": total - len(missing),
                "total": total,
                "coverage": (total - len(missing)) / total if total else 1.0,
                "missing": missing,
                "extra": extra,
                "problems": self.problems(code),
            }
        return report

    def problems(self, code: str) -> List[str]:
        """Mistakes a writer can make in one file: payloads, variables, long titles, unsourced figures."""
        reference = self.languages[FALLBACK_LANGUAGE].responses
        found = []
        for key, entry in self.languages[code].responses.items():
            ref = reference.get(key)
            text = entry["text"]
            if ref is not None:
                want = sorted(str(b["payload"]) for b in ref.get("buttons") or [])
                have = sorted(str(b["payload"]) for b in entry.get("buttons") or [])
                if want != have:
                    found.append(f"{key}: button payloads {have} differ from English {want}")
                ref_vars = {f for _, f, _, _ in _FORMATTER.parse(ref["text"]) if f}
                own_vars = {f for _, f, _, _ in _FORMATTER.parse(text) if f}
                if ref_vars != own_vars:
                    found.append(f"{key}: variables {sorted(own_vars)} differ from English {sorted(ref_vars)}")
            for button in entry.get("buttons") or []:
                # a placeholder counts as three characters (e.g. "365" days)
                if len(re.sub(r"\{[a-z_]+\}", "365", str(button["title"]))) > BUTTON_TITLE_MAX:
                    found.append(f"{key}: button title longer than {BUTTON_TITLE_MAX}: {button['title']!r}")
            if _FIGURE.search(_strip_variables(text)) and not entry.get("sources"):
                found.append(f"{key}: states a figure, rule or phone number but has no 'sources'")
            for source in entry.get("sources") or []:
                if not has_year(source):
                    found.append(f"{key}: every source needs a name and a year (or the year it was accessed)")
        ref_labels = self.languages[FALLBACK_LANGUAGE].labels
        for key, value in self.languages[code].labels.items():
            if key in ref_labels:
                want = {f for _, f, _, _ in _FORMATTER.parse(ref_labels[key]) if f}
                have = {f for _, f, _, _ in _FORMATTER.parse(value) if f}
                if want != have:
                    found.append(f"labels.{key}: variables {sorted(have)} differ from English {sorted(want)}")
        return found


def _strip_variables(text: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "", text)


_store: Optional[ContentStore] = None


def store() -> ContentStore:
    """The shared store, loaded on first use."""
    global _store
    if _store is None:
        _store = ContentStore()
    return _store


# -- keeping domain.yml's responses in step with English ----------------------------------------
DOMAIN_MARKER = "# --- generated from data/content/en.yml by `python -m bot content sync-domain`; do not edit below ---"


def domain_responses_yaml(content: ContentStore) -> str:
    responses = {}
    for key, entry in content.languages[FALLBACK_LANGUAGE].responses.items():
        item: Dict[str, Any] = {"text": entry["text"]}
        if entry.get("buttons"):
            item["buttons"] = [{"title": str(b["title"]), "payload": str(b["payload"])} for b in entry["buttons"]]
        responses[key] = [item]
    return yaml.safe_dump({"responses": responses}, allow_unicode=True, sort_keys=True, width=100)


def sync_domain(domain_path: Path, content: ContentStore, write: bool = True) -> bool:
    """Rewrite the generated responses block of domain.yml; True when it changed."""
    text = domain_path.read_text(encoding="utf-8")
    if DOMAIN_MARKER not in text:
        raise ContentError(f"{domain_path}: marker line not found:\n{DOMAIN_MARKER}")
    head = text.split(DOMAIN_MARKER, 1)[0]
    new = head + DOMAIN_MARKER + "\n" + domain_responses_yaml(content)
    if new == text:
        return False
    if write:
        domain_path.write_text(new, encoding="utf-8")
    return True
