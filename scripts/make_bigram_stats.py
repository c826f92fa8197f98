"""Build the character bigram table that ships with lmlab (src/lmlab/tasks/data/hh_rlhf_char_bigram.json).

Source: the `chosen` dialogues of Anthropic HH-RLHF, harmless-base test split (MIT licence,
Copyright (c) 2022 Anthropic; see src/lmlab/tasks/data/LICENSE-hh-rlhf). Only character counts are
shipped, not the text. Text is NFKD-normalised to ASCII; characters seen fewer than 200 times are dropped.

    python scripts/make_bigram_stats.py ../shared/data/hh-rlhf-harmless-base-test.jsonl.gz
"""

import collections
import gzip
import hashlib
import json
import sys
import unicodedata
from pathlib import Path

MIN_COUNT = 200


def main(src: str) -> None:
    raw = Path(src).read_bytes()
    rows = [json.loads(line) for line in gzip.decompress(raw).decode().splitlines()]
    text = "".join(unicodedata.normalize("NFKD", r["chosen"]).encode("ascii", "ignore").decode() for r in rows)
    counts = collections.Counter(text)
    vocab = sorted(c for c, n in counts.items() if n >= MIN_COUNT)
    keep = set(vocab)
    text = "".join(c for c in text if c in keep)
    index = {c: i for i, c in enumerate(vocab)}
    uni = [0] * len(vocab)
    bi = collections.Counter()
    for a, b in zip(text, text[1:]):
        bi[(index[a], index[b])] += 1
    for c in text:
        uni[index[c]] += 1
    out = {
        "version": "hh_rlhf_char_bigram/1",
        "source": "Anthropic HH-RLHF harmless-base test split, `chosen` field (MIT, Copyright (c) 2022 Anthropic)",
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "n_chars": len(text),
        "vocab": vocab,
        "unigram": uni,
        "bigram": [[a, b, n] for (a, b), n in sorted(bi.items())],
    }
    dst = Path(__file__).resolve().parents[1] / "src/lmlab/tasks/data/hh_rlhf_char_bigram.json"
    dst.write_text(json.dumps(out, separators=(",", ":")))
    print(f"{dst}: {len(vocab)} symbols, {len(text)} chars, {len(bi)} bigrams")


if __name__ == "__main__":
    main(sys.argv[1])
