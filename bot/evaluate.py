"""`make evaluate`: train on the fixed training split, score intents on the held-out split.

Writes reports/nlu/summary.json ({"languages": {lang: {"accuracy", "macro_f1", "n"}}}) and
reports/nlu/report.md (per-language table and the most confused intent pairs).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

from bot.settings import ROOT
from bot.training import rasa_executable, split_examples, write_nlu

REPORT_DIR = ROOT / "reports" / "nlu"
TARGET_MACRO_F1 = 0.90


def _train_split_model(train_file: Path, work: Path) -> Path:
    digest = hashlib.sha256(train_file.read_bytes() + (ROOT / "config.yml").read_bytes()).hexdigest()[:12]
    model = work / f"eval-{digest}.tar.gz"
    if model.exists():
        print(f"evaluate: reusing {model.relative_to(ROOT)} (same training split and config)", flush=True)
        return model
    print("evaluate: training on the training split", flush=True)
    start = time.monotonic()
    subprocess.run([rasa_executable(), "train", "nlu", "--config", "config.yml", "--nlu", str(train_file),
                    "--out", str(work), "--fixed-model-name", model.name[:-len(".tar.gz")]], cwd=ROOT, check=True)
    print(f"evaluate: trained in {time.monotonic() - start:.0f}s", flush=True)
    return model


def _cached_predict(model: Path, texts: List[str]) -> List[Tuple[str, str]]:
    """`_predict` with a cache per model file (re-scoring the accepted model costs only the new texts)."""
    cache_path = REPORT_DIR / "work" / f"predictions-{model.name}.json"
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.exists() else {}
    missing = sorted({t for t in texts if t not in cache})
    if missing:
        for text, pair in zip(missing, asyncio.run(_predict(model, missing))):
            cache[text] = list(pair)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache, ensure_ascii=False), encoding="utf-8")
    return [tuple(cache[t]) for t in texts]


async def _predict(model: Path, texts: List[str]) -> List[Tuple[str, str]]:
    """(the classifier's top intent, what the assistant acts on: the same or `nlu_fallback`)."""
    from rasa.core.agent import Agent
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)  # Rasa's debug lines would print every text parsed
    agent = Agent.load(str(model))
    predictions = []
    for text in texts:
        parsed = await agent.parse_message(text)
        acted = (parsed.get("intent") or {}).get("name") or "none"
        ranking = [r.get("name") for r in parsed.get("intent_ranking") or [] if r.get("name") != "nlu_fallback"]
        predictions.append((ranking[0] if ranking else acted, acted))
    return predictions


def score(pairs: List[Tuple[str, str]], predicted: List[str]) -> Dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    truth = [intent for _, intent in pairs]
    labels = sorted(set(truth))
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)), 4),
        "n": len(truth),
    }


def _safety(pairs: List[Tuple[str, str]], acted: List[str]) -> Dict[str, float]:
    """Does a safety message get a safety answer (any safety intent acted on)? And how often do others?"""
    from bot.handoff import SAFETY_INTENTS

    positives = [a in SAFETY_INTENTS for (_, intent), a in zip(pairs, acted) if intent in SAFETY_INTENTS]
    negatives = [a in SAFETY_INTENTS for (_, intent), a in zip(pairs, acted) if intent not in SAFETY_INTENTS]
    return {"recall": round(sum(positives) / len(positives), 4) if positives else 1.0,
            "false_positive_rate": round(sum(negatives) / len(negatives), 4) if negatives else 0.0,
            "n": len(positives)}


SAFETY_SET_DIR = ROOT / "tests" / "safety"


def safety_sets(directory: Path = SAFETY_SET_DIR) -> Dict[str, Dict[str, Tuple[List[str], List[str]]]]:
    """Per language and set: (messages that need the safety answer, ordinary messages), written
    independently of the training data: the first set (tests/safety/<lang>.yml) and the fresh one
    written for issue 6 (tests/safety/fresh/<lang>.yml)."""
    import yaml

    result: Dict[str, Dict[str, Tuple[List[str], List[str]]]] = {}
    for name, folder in (("first", directory), ("fresh", directory / "fresh")):
        for path in sorted(folder.glob("*.yml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            danger = [str(m) for messages in (data.get("safety") or {}).values() for m in messages or []]
            result.setdefault(path.stem, {})[name] = (danger, [str(m) for m in data.get("ordinary") or []])
    return result


def safety_set(directory: Path = SAFETY_SET_DIR) -> Dict[str, Tuple[List[str], List[str]]]:
    """Per language: every set together."""
    return {lang: ([t for d, _ in sets.values() for t in d], [t for _, o in sets.values() for t in o])
            for lang, sets in safety_sets(directory).items()}


def score_safety(model: Path, directory: Path = SAFETY_SET_DIR) -> Dict[str, Dict[str, float]]:
    """Recall on danger messages and false-positive rate on ordinary ones, as the person gets them."""
    from bot.handoff import SAFETY_INTENTS

    sets = safety_sets(directory)
    texts = [t for by_set in sets.values() for danger, ordinary in by_set.values() for t in danger + ordinary]
    acted = iter(a for _, a in asyncio.run(_predict(model, texts)))
    scores = {}
    for lang, by_set in sets.items():
        all_hits: List[bool] = []
        all_false: List[bool] = []
        missed: List[str] = []
        parts = {}
        for name, (danger, ordinary) in by_set.items():
            hits = [next(acted) in SAFETY_INTENTS for _ in danger]
            false = [next(acted) in SAFETY_INTENTS for _ in ordinary]
            parts[name] = {"recall": round(sum(hits) / len(hits), 4) if hits else 1.0,
                           "false_positive_rate": round(sum(false) / len(false), 4) if false else 0.0,
                           "n": len(hits), "ordinary": len(false)}
            all_hits += hits
            all_false += false
            missed += [text for text, hit in zip(danger, hits) if not hit]
        scores[lang] = {"recall": round(sum(all_hits) / len(all_hits), 4) if all_hits else 1.0,
                        "false_positive_rate": round(sum(all_false) / len(all_false), 4) if all_false else 0.0,
                        "n": len(all_hits), "ordinary": len(all_false), "sets": parts,
                        # the danger messages that did not get the safety answer (the set is public test data)
                        "missed": missed}
    return scores


ACCEPTED_RECORD = REPORT_DIR / "accepted.json"  # committed: the accepted model's numbers
ACCEPTED_MODEL = ROOT / "models" / "accepted-eval.tar.gz"  # local: the accepted split model itself
MAX_DROP = 0.02  # a language may not lose more than 2 points of macro-F1


def compare_with_accepted(ordered, test, languages) -> Dict:
    """Per language: the accepted model's macro-F1 and the new one's, on the same held-out split.

    The split is a hash of each example, so neither model trained on any held-out example. With the
    accepted model file at hand, it is scored on today's held-out examples; otherwise the numbers
    recorded when it was accepted are used (the held-out set may have grown since)."""
    if not ACCEPTED_RECORD.exists():
        return {}
    record = json.loads(ACCEPTED_RECORD.read_text(encoding="utf-8"))
    accepted: Dict[str, float] = {l: v["macro_f1"] for l, v in record.get("languages", {}).items()}
    basis = "numbers recorded when it was accepted"
    if ACCEPTED_MODEL.exists():
        predicted = _cached_predict(ACCEPTED_MODEL, [t for _, t, _ in ordered])
        for lang in sorted(test):
            idx = [i for i, item in enumerate(ordered) if item[0] == lang]
            accepted[lang] = score([(ordered[i][1], ordered[i][2]) for i in idx], [predicted[i][0] for i in idx])["macro_f1"]
        basis = "both models scored on today's held-out split"
    return {"accepted_model": record.get("model", "?"), "basis": basis, "languages": {
        l: {"accepted": accepted[l], "new": languages[l]["macro_f1"], "delta": round(languages[l]["macro_f1"] - accepted[l], 4)}
        for l in languages if l in accepted}}


def gate(summary: Dict, max_drop: float = MAX_DROP) -> List[str]:
    """Why this model must not ship: a language below target, down more than `max_drop`, or safety recall < 1."""
    problems = []
    target = summary.get("target_macro_f1", TARGET_MACRO_F1)
    for lang, v in summary.get("languages", {}).items():
        if v["macro_f1"] < target:
            problems.append(f"{lang}: macro-F1 {v['macro_f1']:.3f} below the target {target}")
    for lang, v in (summary.get("comparison") or {}).get("languages", {}).items():
        if v["delta"] < -max_drop:
            problems.append(f"{lang}: macro-F1 fell {100 * -v['delta']:.1f} points ({v['accepted']:.3f} -> {v['new']:.3f})")
    for lang, v in (summary.get("safety") or {}).items():
        if v["recall"] < 1.0:
            problems.append(f"{lang}: safety recall {v['recall']:.3f} below 1.0")
    return problems


def accept(report_dir: Path = REPORT_DIR) -> Dict:
    """Make the last evaluated model the one new models are compared with."""
    import shutil

    summary = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    model = report_dir / "work" / summary["model"]["name"]
    record = {"model": summary["model"]["name"], "accepted_at": time.strftime("%Y-%m-%d"),
              "languages": {l: {"macro_f1": v["macro_f1"]} for l, v in summary["languages"].items()},
              "safety": {l: {"recall": v["recall"]} for l, v in (summary.get("safety") or {}).items()}}
    ACCEPTED_RECORD.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if model.exists():
        ACCEPTED_MODEL.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, ACCEPTED_MODEL)
        cached = report_dir / "work" / f"predictions-{model.name}.json"
        if cached.exists():
            shutil.copyfile(cached, report_dir / "work" / f"predictions-{ACCEPTED_MODEL.name}.json")
    return record


def draw_charts(languages: Dict, comparison: Dict, confusions, report_dir: Path) -> List[Path]:
    """PNG charts: macro-F1 per language (accepted vs new, with the target) and the most confused intents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = []
    codes = list(languages)
    new = [languages[c]["macro_f1"] for c in codes]
    accepted = [(comparison.get("languages") or {}).get(c, {}).get("accepted") for c in codes]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(codes))
    if any(a is not None for a in accepted):
        ax.bar([i - 0.2 for i in x], [a or 0 for a in accepted], width=0.4, label="accepted", color="#9aa5b1")
        ax.bar([i + 0.2 for i in x], new, width=0.4, label="new", color="#1f6feb")
    else:
        ax.bar(list(x), new, width=0.6, label="new", color="#1f6feb")
    ax.axhline(TARGET_MACRO_F1, color="#d1242f", linestyle="--", linewidth=1, label=f"target {TARGET_MACRO_F1}")
    ax.set_xticks(list(x), codes)
    ax.set_ylim(0.7, 1.0)
    ax.set_ylabel("macro-F1 (held-out)")
    ax.set_title("Intent classification per language")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = report_dir / "macro_f1.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    charts.append(path)
    top = confusions.most_common(15)
    if top:
        fig, ax = plt.subplots(figsize=(8, 5))
        labels = [f"{l}: {t} → {p}" for (l, t, p), _ in top][::-1]
        ax.barh(labels, [c for _, c in top][::-1], color="#bf8700")
        ax.set_xlabel("held-out examples")
        ax.set_title("Most confused intents")
        fig.tight_layout()
        path = report_dir / "confusions.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        charts.append(path)
    return charts


def run(nlu_dir: Path = ROOT / "data" / "nlu", report_dir: Path = REPORT_DIR) -> Dict[str, Dict]:
    logging.getLogger("rasa").setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = report_dir / "work"
    train, test = split_examples(nlu_dir)
    train_file = work / "train.yml"
    write_nlu(train, train_file)
    model = _train_split_model(train_file, work)
    ordered = [(lang, text, intent) for lang in sorted(test) for text, intent in test[lang]]
    print(f"evaluate: scoring {len(ordered)} held-out examples", flush=True)
    predicted = _cached_predict(model, [t for _, t, _ in ordered])
    languages, confusions, safety_heldout = {}, Counter(), {}
    for lang in sorted(test):
        idx = [i for i, item in enumerate(ordered) if item[0] == lang]
        pairs = [(ordered[i][1], ordered[i][2]) for i in idx]
        languages[lang] = score(pairs, [predicted[i][0] for i in idx])
        with_fallback = score(pairs, [predicted[i][1] for i in idx])
        languages[lang]["macro_f1_with_fallback"] = with_fallback["macro_f1"]
        languages[lang]["fallback_rate"] = round(sum(predicted[i][1] == "nlu_fallback" for i in idx) / len(idx), 4)
        safety_heldout[lang] = _safety(pairs, [predicted[i][1] for i in idx])
        for i in idx:
            if predicted[i][0] != ordered[i][2]:
                confusions[(lang, ordered[i][2], predicted[i][0])] += 1
    comparison = compare_with_accepted(ordered, test, languages)
    summary = {"languages": languages, "target_macro_f1": TARGET_MACRO_F1, "safety_heldout": safety_heldout,
               "comparison": comparison,
               "model": {"name": model.name, "training_examples": sum(len(v) for t in train.values() for v in t.values())},
               "split": "1 in 5 examples held out by a hash of language and text (bot/training.py)"}
    safety: Dict[str, Dict[str, float]] = {}
    if SAFETY_SET_DIR.exists() and nlu_dir == ROOT / "data" / "nlu":
        from bot.training import train

        print("evaluate: scoring the independent safety set with the full model", flush=True)
        safety = score_safety(train())
        summary["safety"] = safety
    summary_path = report_dir / "summary.json"
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for key, value in previous.items():
        summary.setdefault(key, value)  # keep sections other steps add (e.g. safety)
    report_dir.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["# NLU evaluation (held-out split)", "",
             "macro-F1 and accuracy score the classifier's top intent. 'with fallback' scores what the",
             "assistant acts on: below the FallbackClassifier threshold it asks to rephrase (counted wrong).", "",
             "| language | macro-F1 | accuracy | macro-F1 with fallback | fallback rate | n |", "|---|---|---|---|---|---|"]
    lines += [f"| {l} | {v['macro_f1']:.3f} | {v['accuracy']:.3f} | {v['macro_f1_with_fallback']:.3f} | "
              f"{v['fallback_rate']:.1%} | {v['n']} |" for l, v in languages.items()]
    lines += ["", "## Safety messages in the held-out split (what the person gets)", "",
              "| language | recall | false-positive rate | n |", "|---|---|---|---|"]
    lines += [f"| {l} | {v['recall']:.3f} | {v['false_positive_rate']:.3f} | {v['n']} |" for l, v in safety_heldout.items()]
    if safety:
        lines += ["", "## Independent safety sets (tests/safety/ and tests/safety/fresh/, never trained on; "
                  "the shipped model)", "",
                  "| language | recall | false-positive rate | danger n | ordinary n | recall first / fresh |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {l} | {v['recall']:.3f} | {v['false_positive_rate']:.3f} | {v['n']} | {v['ordinary']} | "
                  + " / ".join(f"{p['recall']:.3f}" for p in v["sets"].values()) + " |" for l, v in safety.items()]
        missed = [(l, text) for l, v in safety.items() for text in v.get("missed", [])]
        if missed:
            lines += ["", "Missed (no safety answer):", ""] + [f"- {l}: {text}" for l, text in missed]
    if comparison.get("languages"):
        lines += ["", f"## Compared with the last accepted model ({comparison['accepted_model']}; "
                      f"{comparison['basis']})", "",
                  "| language | accepted | new | change (points) |", "|---|---|---|---|"]
        lines += [f"| {l} | {v['accepted']:.3f} | {v['new']:.3f} | {100 * v['delta']:+.1f} |"
                  for l, v in comparison["languages"].items()]
    charts = draw_charts(languages, comparison, confusions, report_dir)
    if charts:
        lines += ["", "Charts: " + ", ".join(f"[{c.name}]({c.name})" for c in charts)]
    lines += ["", "## Most confused (language, true → predicted, count)", ""]
    lines += [f"- {l}: {t} → {p} ({c})" for (l, t, p), c in confusions.most_common(25)]
    (report_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[:7 + len(languages)]), flush=True)
    return languages
