"""Training only when needed, and the fixed train/held-out split used by `make evaluate`.

The model's name carries a fingerprint of everything that changes predictions (config, the
domain without its response texts, NLU data, rules and stories, the code of our NLU components in
bot/nlu), so `make run` trains only when one of those changed. Content (answers) is not part of it: a content fix needs no retraining.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import yaml

from bot.settings import ROOT

MODELS_DIR = ROOT / "models"
TRAINING_DATA = ["data/nlu", "data/rules", "data/stories"]  # never data/content: answers are not training data
# Our NLU components' code is part of the model too: a change there retrains.
TRAINING_INPUTS = ["config.yml", "domain.yml", *TRAINING_DATA, "bot/nlu"]
HELD_OUT_BUCKETS = 5  # one example in five (by a hash of its text) is held out for evaluation


def _files(paths: Iterable[str], root: Path) -> List[Path]:
    found = []
    for item in paths:
        path = root / item
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".py")))
        elif path.exists():
            found.append(path)
    return found


def fingerprint(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for path in _files(TRAINING_INPUTS, root):
        data = path.read_bytes()
        if path.name == "domain.yml":
            loaded = yaml.safe_load(data) or {}
            loaded.pop("responses", None)
            data = yaml.safe_dump(loaded, sort_keys=True).encode()
        digest.update(str(path.relative_to(root)).encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:12]


def model_path(root: Path = ROOT) -> Path:
    return root / "models" / f"crossroads-{fingerprint(root)}.tar.gz"


def rasa_executable() -> str:
    return str(Path(sys.executable).with_name("rasa"))


def train(force: bool = False, root: Path = ROOT, out: Optional[Path] = None) -> Path:
    """Train the full model unless one with the same fingerprint exists; print progress and time."""
    target = out or model_path(root)
    if target.exists() and not force:
        print(f"train: up to date ({target.relative_to(root)})", flush=True)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"train: training {target.name} (about a minute; Rasa lists each component as it trains)", flush=True)
    start = time.monotonic()
    command = [rasa_executable(), "train", "--config", "config.yml", "--domain", "domain.yml",
               "--data", *TRAINING_DATA, "--out", str(target.parent), "--fixed-model-name", target.name[:-len(".tar.gz")]]
    subprocess.run(command, cwd=root, check=True)
    elapsed = time.monotonic() - start
    size = target.stat().st_size / 1e6
    print(f"train: done in {elapsed:.0f}s, model {size:.1f} MB", flush=True)
    models = sorted(target.parent.glob("crossroads-*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in models[3:]:
        stale.unlink()
    return target


def is_held_out(language: str, text: str) -> bool:
    digest = hashlib.sha256(f"{language}\0{text.strip().casefold()}".encode()).digest()
    return digest[0] % HELD_OUT_BUCKETS == 0


def split_examples(nlu_dir: Path) -> Tuple[Dict[str, Dict[str, List[str]]], Dict[str, List[Tuple[str, str]]]]:
    """(training examples per language per intent, held-out (text, intent) pairs per language)."""
    train: Dict[str, Dict[str, List[str]]] = {}
    test: Dict[str, List[Tuple[str, str]]] = {}
    for path in sorted(nlu_dir.glob("*.yml")):
        lang = path.stem
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for block in data.get("nlu", []):
            intent = block.get("intent")
            if not intent:
                continue
            for line in str(block.get("examples", "")).splitlines():
                line = line.strip()
                if not line.startswith("- "):
                    continue
                text = line[2:].strip()
                if is_held_out(lang, text):
                    test.setdefault(lang, []).append((text, intent))
                else:
                    train.setdefault(lang, {}).setdefault(intent, []).append(text)
    return train, test


def write_nlu(examples: Dict[str, Dict[str, List[str]]], path: Path) -> None:
    blocks = []
    for lang in sorted(examples):
        for intent in sorted(examples[lang]):
            blocks.append({"intent": intent, "examples": "".join(f"- {t}\n" for t in examples[lang][intent])})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": "3.1", "nlu": blocks}, allow_unicode=True, sort_keys=False,
                                   width=10_000), encoding="utf-8")
