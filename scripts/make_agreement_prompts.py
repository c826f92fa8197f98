"""Write benchmarks/data/agreement_prompts.jsonl: 1,000 user messages for the low-precision agreement check,
744 drawn from the bundled moderation samples and all 256 first human turns of the bundled HH-RLHF subset
(seeded, so the committed file can be regenerated). Each message is cut to 240 characters (at a word
boundary) to keep the 1,000 forward passes short; the check formats them with the model's chat template.

    python scripts/make_agreement_prompts.py
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODERATION = ROOT / "src/lmlab/moderation/data/moderation-samples-1680.jsonl.gz"
HH = ROOT / "src/lmlab/rewardeval/assets/hh-rlhf-harmless-base-test-sub256.jsonl.gz"
OUT = ROOT / "benchmarks/data/agreement_prompts.jsonl"
N_TOTAL, MAX_CHARS, SEED = 1000, 240, 0


def cut(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_CHARS:
        return text
    return text[:MAX_CHARS].rsplit(" ", 1)[0]


def main() -> None:
    with gzip.open(HH, "rt") as f:
        hh = [json.loads(line) for line in f]
    hh_msgs = []
    for row in hh:
        m = re.search(r"Human:(.*?)(?:\n\nAssistant:|$)", row["chosen"], flags=re.S)
        if m and m.group(1).strip():
            hh_msgs.append(cut(m.group(1)))
    with gzip.open(MODERATION, "rt") as f:
        mod = [cut(json.loads(line)["prompt"]) for line in f]
    mod = [m for m in mod if m]
    rng = random.Random(SEED)
    rows = [{"source": "hh-rlhf", "text": t} for t in hh_msgs]
    rows += [{"source": "moderation", "text": t} for t in rng.sample(mod, N_TOTAL - len(rows))]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} prompts -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
