"""Parse rate of the self-judge (the additive 5-point rubric, Meta-Rewarding's judge) on the embedded
SmolLM2-135M-Instruct, before and after the two fair fixes, on the same judgments:

- the judgment cap ``iteration.judge_max_new_tokens``: each judgment is decoded once up to ``--cap`` new tokens;
  the first ``c`` tokens of that text are exactly what a run with the cap ``c`` would have decoded (a row's
  tokens depend only on its own seed, and a cap only stops decoding), so the parse rate at every cap in
  ``--caps`` comes from one decode (the prefix is cut by re-encoding the text, which can move a cut by a token);
- the parser: ``strict`` (the rubric's own "Score: N" form) vs ``lenient`` (labelled score statements the model
  writes, such as "The score is 3", "Score = 4/5", "a total score of 2"; see ``lmlab.selfimprove.prompts``).

Rows: ``--self`` self-judgments of saved responses to training problems (temperature 0.8, top-p 0.95, as the
study judges), and ``--hh`` greedy judgments of bundled HH-RLHF responses (as the agreement probe judges).
``--saved``: also re-parse the judgments of a saved run's ``scores.jsonl`` (decoded with the cap of that run).
Writes every judgment's text and the rates with Wilson 95% intervals to ``--out``.

``--prefill "Score:"`` is a **deviation from the paper** (which asks for a justification, then the score): the
judge's answer is started with the prefill, so the model can only continue with a score; decoded greedily for a
few tokens. It measures whether forced scores carry any signal: the mean score of correct vs wrong responses
(self rows, exact answers of the generated problems) and the pairwise agreement with the human label on HH pairs
(ties count half, as in ``lmlab.selfimprove.agreement``).

    heavy python benchmarks/selfimprove_judge_parse.py --threads 1 \
        --samples runs/mr-quick/meta-rewarding/iter1/samples.jsonl --saved runs/mr-quick/meta-rewarding/iter1/scores.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / d
    return [round(max(0.0, c - h), 4), round(min(1.0, c + h), 4)]


def rate(texts: list[str], parse) -> dict:
    k = sum(parse(t) is not None for t in texts)
    return {"parsed": k, "n": len(texts), "rate": round(k / len(texts), 4) if texts else None, "ci": wilson(k, len(texts))}


def user_text(chat_prompt: str) -> str:
    """The user message of a saved chat-formatted prompt (ChatML)."""
    s = chat_prompt.split("<|im_start|>user\n", 1)[-1]
    return s.split("<|im_end|>", 1)[0].strip()


def prefill_signal(rows: list[dict], texts: list[str], ds) -> dict:
    """Do forced scores separate correct from wrong responses, and human-preferred from rejected ones?"""
    import numpy as np

    from lmlab.rewardeval.builder import extract_answer, make_problem
    from lmlab.rewardeval.metrics import bootstrap_mean_ci, pair_correctness
    from lmlab.selfimprove.prompts import parse_score

    scores = [parse_score(t, lenient=True) for t in texts]
    res: dict = {"score_counts": {str(s): scores.count(s) for s in sorted(set(scores), key=lambda x: (x is None, x))}}
    right, wrong = [], []
    for r, s in zip(rows, scores):
        if r["kind"] != "self" or s is None:
            continue
        d, lvl, seed, idx = r["id"].rsplit("-", 3)
        p = make_problem(d, int(lvl), int(idx), seed=int(seed))
        (right if extract_answer(r["response"]) == p.answer else wrong).append(s)
    res["self_mean_score_correct_vs_wrong"] = [float(np.mean(right)) if right else None, len(right),
                                               float(np.mean(wrong)) if wrong else None, len(wrong)]
    hh = [s for r, s in zip(rows, scores) if r["kind"] == "hh"]
    n = len(hh) // 2
    if n:
        def v(s):
            return np.nan if s is None else s

        margin = np.array([np.nan_to_num(v(hh[2 * i]) - v(hh[2 * i + 1]), nan=0.0) for i in range(n)])
        credit = pair_correctness(margin, np.asarray(ds.label[:n]), rm_ties="half")
        res["hh_agreement"] = [float(np.mean(credit)), list(bootstrap_mean_ci(credit, seed=0)), int((margin != 0).sum()), n]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", required=True, help="a saved samples.jsonl (responses to judge)")
    ap.add_argument("--saved", default="", help="a saved scores.jsonl whose judgments are re-parsed")
    ap.add_argument("--self", dest="n_self", type=int, default=32, help="self-judgments (T 0.8)")
    ap.add_argument("--hh", type=int, default=16, help="greedy judgments of HH-RLHF responses (2 per pair)")
    ap.add_argument("--cap", type=int, default=256)
    ap.add_argument("--caps", default="96,128,160,192,256")
    ap.add_argument("--slots", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefill", default="", help="start the judge's answer with this text (a deviation; see above)")
    ap.add_argument("--out", default="benchmarks/results/selfimprove_judge_parse.json")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(a.threads)
    from lmlab.io import atomic_write_text
    from lmlab.lm import load_lm
    from lmlab.selfimprove.agreement import hh_pairs
    from lmlab.selfimprove.generation import generate_rows, row_seeds
    from lmlab.selfimprove.prompts import JUDGE_TEMPLATE, parse_score

    parsers = {"strict": lambda t: parse_score(t, lenient=False), "lenient": lambda t: parse_score(t, lenient=True)}
    out: dict = {"cap": a.cap, "threads": a.threads, "model": "SmolLM2-135M-Instruct (embedded, float32)"}
    if a.saved:
        saved = [t for line in Path(a.saved).read_text().splitlines() if line.strip()
                 for resp in json.loads(line)["judgments"] for t, _ in resp]
        out["saved"] = {"path": a.saved, **{k: rate(saved, p) for k, p in parsers.items()},
                        "lenient_matches": [t for t in saved if parse_score(t, lenient=True) is not None]}
    lm = load_lm("default", needs=("trainable",), batch_size=a.slots)
    tok = lm.hf_tokenizer
    rows: list[dict] = []
    for line in Path(a.samples).read_text().splitlines():
        r = json.loads(line)
        for s in r["samples"]:
            if len(rows) < a.n_self and s.strip():
                rows.append({"kind": "self", "id": r["id"], "instruction": user_text(r["prompt"]), "response": s,
                             "temperature": 0.8, "top_p": 0.95})
    ds = hh_pairs((a.hh + 1) // 2, seed=a.seed)
    for p, r1, r2, q in zip(ds.prompt, ds.response_1, ds.response_2, ds.question_id):
        for r in (r1, r2):
            rows.append({"kind": "hh", "id": q, "instruction": p.strip(), "response": r, "temperature": 0.0, "top_p": 1.0})
    rows = rows[:a.n_self + a.hh]
    seeds = row_seeds(a.seed, len(rows))
    t = time.perf_counter()
    texts: list[str] = [""] * len(rows)
    for kind in ("self", "hh"):  # one call per sampling setting
        idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
        if not idx:
            continue
        prompts = [lm.chat_prompt(JUDGE_TEMPLATE.format(instruction=rows[i]["instruction"], response=rows[i]["response"]))
                   + a.prefill for i in idx]
        temp, top_p = (0.0, 1.0) if a.prefill else (rows[idx[0]]["temperature"], rows[idx[0]]["top_p"])
        got = generate_rows(lm, prompts, a.cap, temp, top_p, seeds=[seeds[i] for i in idx])
        for i, g in zip(idx, got):
            texts[i] = a.prefill + g
    out["decode_seconds"] = round(time.perf_counter() - t, 1)
    caps = [int(c) for c in a.caps.split(",")]
    for r, text in zip(rows, texts):
        # the cap counts generated tokens only (not the prefill); SmolLM2 splits numbers into digits, so a cut
        # inside "Score: 100" would read "Score: 1"
        ids = tok.encode(text[len(a.prefill):], add_special_tokens=False)
        r["tokens"] = len(ids)
        r["text"] = text
        r["prefix"] = {c: a.prefill + tok.decode(ids[:c]) if c < len(ids) else text for c in caps}
    out["rates"] = {}
    for kind in ("self", "hh", "all"):
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        out["rates"][kind] = {f"{name}@{c}": rate([r["prefix"][c] for r in sel], p)
                              for c in caps for name, p in parsers.items()}
        out["rates"][kind]["reached_cap"] = sum(r["tokens"] >= a.cap - 1 for r in sel)
    if a.prefill:
        out["prefill"] = a.prefill
        out.update(prefill_signal(rows, texts, ds))
    out["judgments"] = [{k: v for k, v in r.items() if k != "prefix"} | {
        "strict": parse_score(r["text"], lenient=False), "lenient": parse_score(r["text"], lenient=True)} for r in rows]
    text = json.dumps(out, indent=1)
    atomic_write_text(Path(a.out), text + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("judgments", "saved")}, indent=1))
    if "saved" in out:
        print(json.dumps({k: v for k, v in out["saved"].items() if k != "lenient_matches"}))


if __name__ == "__main__":
    main()
