"""`python -m bot lang add <code>` and `lang check <code>`: start a language, then see what it lacks.

`add` writes the four files a language needs, each saying what to write (docs/adding-a-language.md):
- data/content/<code>.yml: the language's name, direction and review status, no answers yet (English
  is shown, with a note, for every answer it lacks);
- data/nlu/<code>.yml: empty, with the list of intents to write examples for (at least 25 each);
- data/safety/<code>.yml: the seven safety categories, empty (patterns to write);
- tests/safety/<code>.yml: the independent safety test set, empty (to be written by someone else).
Nothing is overwritten. `check` lists what is missing in each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from bot.errors import CrossroadsError
from bot.settings import ROOT

MIN_EXAMPLES = 25
SAFETY_CATEGORIES = ("fear_of_harm", "self_harm", "violence", "trafficking", "unaccompanied_minor", "detention",
                     "imminent_removal")
RTL = {"ar", "fa", "ps", "ur", "he", "yi", "ku", "sd", "ug", "dv"}


class ScaffoldError(CrossroadsError):
    pass


def paths(code: str, root: Path = ROOT) -> Dict[str, Path]:
    return {"content": root / "data" / "content" / f"{code}.yml", "nlu": root / "data" / "nlu" / f"{code}.yml",
            "lexicon": root / "data" / "safety" / f"{code}.yml", "safety_set": root / "tests" / "safety" / f"{code}.yml"}


def trainable_intents(root: Path = ROOT) -> List[str]:
    domain = yaml.safe_load((root / "domain.yml").read_text(encoding="utf-8"))
    return [i for i in domain["intents"] if isinstance(i, str) and i != "inform"]


def add(code: str, name: str, direction: Optional[str] = None, root: Path = ROOT) -> List[Path]:
    if not re.fullmatch(r"[a-z]{2,3}", code):
        raise ScaffoldError("language code: 2 or 3 lower-case letters (ISO 639-1, e.g. ps, so, ur, bn, ru, ka)")
    direction = direction or ("rtl" if code in RTL else "ltr")
    if direction not in ("ltr", "rtl"):
        raise ScaffoldError("direction: ltr or rtl")
    files = paths(code, root)
    existing = [str(p.relative_to(root)) for p in files.values() if p.exists()]
    if existing:
        raise ScaffoldError(f"{code} exists already ({', '.join(existing)}); `python -m bot lang check {code}` "
                            "lists what it lacks")
    intents = trainable_intents(root)
    name_yaml = yaml.safe_dump(name, allow_unicode=True).strip().removesuffix("...").strip()
    files["content"].write_text(
        f"language: {code}\nname: {name_yaml}\ndirection: {direction}\n"
        "# Set to true only after a native speaker has reviewed every answer in this file.\n"
        "native_review: false\n"
        "# How people name each language in this one (typos and transliterations too), for the language menu.\n"
        "language_names: {}\n"
        "# Answers: write each key of data/content/en.yml naturally in this language (docs/content-guide.md).\n"
        "responses: {}\n"
        "canned_replies: []\nlabels: {}\n", encoding="utf-8")
    files["nlu"].write_text(
        'version: "3.1"\n'
        f"# Write at least {MIN_EXAMPLES} natural examples per intent, as people type them (typos, Latin script\n"
        "# where people use it). Intents (docs/intents.md):\n"
        + "".join(f"#   - {i}\n" for i in intents) + "nlu: []\n", encoding="utf-8")
    files["lexicon"].write_text(
        f"language: {code}\n# Python regular expressions per category (decision 0007), written from your own\n"
        "# knowledge of how people say it, without reading the safety test set.\n"
        + "".join(f"{c}: []\n" for c in SAFETY_CATEGORIES), encoding="utf-8")
    files["safety_set"].write_text(
        f"language: {code}\n# Written independently of the training data and the lexicon, by someone else: at least\n"
        "# 40 danger messages (5+ per category) and 40 ordinary ones.\nsafety:\n"
        + "".join(f"  {c}: []\n" for c in SAFETY_CATEGORIES) + "ordinary: []\n", encoding="utf-8")
    return list(files.values())


@dataclass
class Missing:
    content: List[str] = field(default_factory=list)
    nlu: Dict[str, int] = field(default_factory=dict)  # intent -> examples it has (below the minimum)
    lexicon: List[str] = field(default_factory=list)
    safety_set: List[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.content or self.nlu or self.lexicon or self.safety_set)


def check(code: str, root: Path = ROOT) -> Missing:
    from bot.content import ContentStore

    files = paths(code, root)
    missing = Missing()
    if not files["content"].exists():
        raise ScaffoldError(f"no {files['content'].relative_to(root)}: start with `python -m bot lang add {code}`")
    report = ContentStore(root / "data" / "content").coverage()[code]
    missing.content = list(report["missing"]) + [f"problem: {p}" for p in report["problems"]]
    counts: Dict[str, int] = {i: 0 for i in trainable_intents(root)}
    if files["nlu"].exists():
        for block in (yaml.safe_load(files["nlu"].read_text(encoding="utf-8")) or {}).get("nlu") or []:
            if isinstance(block, dict) and block.get("intent") in counts:
                counts[block["intent"]] += sum(1 for l in str(block.get("examples") or "").splitlines()
                                               if l.strip().startswith("- "))
    missing.nlu = {i: n for i, n in counts.items() if n < MIN_EXAMPLES}
    lexicon = yaml.safe_load(files["lexicon"].read_text(encoding="utf-8")) if files["lexicon"].exists() else {}
    missing.lexicon = [c for c in SAFETY_CATEGORIES if not (lexicon or {}).get(c)]
    tests = yaml.safe_load(files["safety_set"].read_text(encoding="utf-8")) if files["safety_set"].exists() else {}
    safety = (tests or {}).get("safety") or {}
    missing.safety_set = [f"{c}: {len(safety.get(c) or [])}/5" for c in SAFETY_CATEGORIES if len(safety.get(c) or []) < 5]
    danger = sum(len(v or []) for v in safety.values())
    if danger < 40:
        missing.safety_set.append(f"danger messages: {danger}/40")
    if len((tests or {}).get("ordinary") or []) < 40:
        missing.safety_set.append(f"ordinary messages: {len((tests or {}).get('ordinary') or [])}/40")
    return missing
