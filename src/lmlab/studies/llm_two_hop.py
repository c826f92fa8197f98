"""Two-hop in-context reasoning in a pretrained LLM (Guo et al. 2025, arXiv 2502.13913, LLM probe).

The paper gives pretrained LLMs two-hop facts in context with K distracting chains and finds that
they guess: the target End gets about 1/(number of chains) of the probability (Llama-2-7B:
0.82 / 0.41 / 0.31 / 0.25 / 0.20 for 1..5 chains), i.e. the model picks uniformly among the End
entities of all chains, until a short fine-tune teaches it the query.

This study builds the prompts from the synthetic task's own generator (``lmlab.tasks.two_hop``:
the same chains, the same uniform interleaving of premises that keeps each chain's order, the same
uniform choice of the queried chain), with entities rendered as first names that are one token
for the model's tokenizer and each premise pair (a, b) as a sentence::

    The boss of Amy is Mike. The boss of Ethan is Ray. The boss of Ray is Noah. The boss of Mike is
    Jack. Therefore, the boss of the boss of Amy is

(K = 1 here: Amy -> Mike -> Jack is the queried chain, Ethan -> Ray -> Noah distracts.) For each
prompt it reads the next-token logits once and measures, per K:

- the target End's probability over the whole vocabulary (the paper's quantity), against the guessing
  value 1/(K+1);
- top-1 accuracy (the argmax over the whole vocabulary is the target End's token);
- the target's probability among the K+1 candidate Ends (softmax restricted to them; an extra metric:
  any model that does not tell the Ends apart, a random one included, scores 1/(K+1) on it);
- where wrong top-1 answers land: a distracting End, the queried chain's bridge (a one-hop
  answer), its source, another context entity, or a token that is no entity of the prompt.

The default config is the paper's probe size (1,000 prompts per K); ``--quick`` uses 100 per K.

``finetune_steps > 0`` then fine-tunes the model with LoRA (peft) on fresh K = 1 prompts (the paper's
mitigation: next-token cross-entropy on the target End) and probes every K again. ``random_init`` (the
negative control, ``--control``) re-initialises the model's weights before the probe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmlab.config import Config, ConfigError, LMConfig
from lmlab.studies.base import (Claim, Result, Study, all_of, at_least, greater, is_true, load_study_lm, model_stage,
                                not_comparable, pyplot, save_figure, within)
from lmlab.tasks.two_hop import N_SPECIAL, TwoHopTask, TwoHopTaskConfig

# Candidate entity names; the study keeps those that are a single token (with a leading space).
NAMES = (
    "Alice Bob Carol David Emma Frank Grace Henry Irene Jack Kate Liam Mary Nina Oscar Paul Rose Sam Tom Victor "
    "Anna Ben Chris Dan Eve Fred George Helen Ivan James John Laura Mark Nick Olivia Peter Ray Sarah Tim Will Amy "
    "Adam Max Leo Mia Zoe Lucy Jane Kevin Luke Ryan Sophie Hannah Jacob Noah Ethan Lily Ella Jim Joe Tony Steve "
    "Mike Lisa"
).split()

# Paper [secondary]: Llama-2-7B probability of the target End for 1..5 chains (K = 0..4 distractors).
PAPER_LLAMA2 = {0: 0.82, 1: 0.41, 2: 0.31, 3: 0.25, 4: 0.20}
# Paper [secondary]: the same after a LoRA fine-tune on K = 1.
PAPER_LLAMA2_AFTER_LORA = [1.00, 1.00, 0.92, 0.89, 0.86]
# Claim thresholds.
MIN_P_TARGET_NO_DISTRACTOR = 0.5  # answers_without_distractors: mean P(target End) at K = 0
# guesses_among_ends: |P(target) - 1/(K+1)| <= GUESS_REL_TOL / (K+1) for every K >= 1, P(target) over the whole
# vocabulary. At K = 4 the band is 0.15..0.25: a model that spreads its mass over all 14 context entities (0.07),
# a random model (~1/vocabulary) or one that answers the query (-> 1) fails it.
GUESS_REL_TOL = 0.25
MIN_DISTRACTOR_SHARE = 0.5  # errors_on_distractor_ends: share of entity-naming errors on distractor Ends
MIN_ENTITY_ERRORS = 0.5  # errors_on_distractor_ends: share of all wrong top-1 answers that name a context entity
MIN_P_TARGET_AFTER_FT = 0.8  # lora_fixes_it: mean P(target) over K >= 1 after the fine-tune (paper: 0.86-1.00)
ERROR_KINDS = ("distractor_end", "query_bridge", "query_source", "other_entity", "not_an_entity")


@dataclass(frozen=True)
class LLMTwoHopConfig(Config):
    seed: int = 0
    lm: LMConfig = field(default_factory=LMConfig)  # the probed model (--model, --device)
    ks: tuple[int, ...] = (0, 1, 2, 3, 4)  # numbers of distracting chains
    n_prompts: int = 1000  # per K
    relation: str = "boss"
    premise: str = "The {rel} of {a} is {b}."
    question: str = "Therefore, the {rel} of the {rel} of {src} is"
    # entity names; () = the built-in first names. A name is used when it is one token after a space (or on
    # its own, when the question ends with a space: tokenizers that split the space off)
    names: tuple[str, ...] = ()
    random_init: bool = False  # the negative control: re-initialise the model's weights (same architecture)
    # LoRA fine-tune on K = 1 prompts (0: not run), then the probe again at every K
    finetune_steps: int = 0
    finetune_batch: int = 8
    finetune_lr: float = 1e-3
    lora_rank: int = 8
    progress: bool = True

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 0:
            raise ConfigError(f"LLMTwoHopConfig.ks must be non-empty numbers >= 0, got {self.ks}")
        if self.n_prompts < 1:
            raise ConfigError("LLMTwoHopConfig.n_prompts must be >= 1")
        if self.finetune_steps < 0 or self.finetune_batch < 1 or self.lora_rank < 1 or self.finetune_lr <= 0:
            raise ConfigError("LLMTwoHopConfig: finetune_steps must be >= 0, finetune_batch and lora_rank >= 1, "
                              "finetune_lr > 0")
        for key, text, fields in (("premise", self.premise, ("{a}", "{b}")), ("question", self.question, ("{src}",))):
            missing = [f for f in fields if f not in text]
            if missing:
                raise ConfigError(f"LLMTwoHopConfig.{key} must contain {', '.join(missing)}, got {text!r}")


def single_token_names(tokenizer: Any, names: tuple[str, ...] = NAMES, lead: str = " ") -> list[str]:
    """Names that are one token after ``lead`` (a space), with distinct token ids."""
    out, seen = [], set()
    for n in names:
        ids = tokenizer(lead + n, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] not in seen:
            out.append(n)
            seen.add(ids[0])
    return out


def make_prompts(cfg: LLMTwoHopConfig, K: int, names: list[str], seed: int) -> dict[str, Any]:
    """n_prompts prompts with K distracting chains, drawn by the synthetic task's generator."""
    task = TwoHopTask(TwoHopTaskConfig(n_chains=K + 1, n_entities=len(names), n_pad=1), seed=seed)
    s = task.sample(cfg.n_prompts, task.rng(K))
    chains = s.chains - N_SPECIAL  # (n, K+1, 3) indices into names
    ctx = s.tokens[:, : task.context_len] - N_SPECIAL
    prompts = []
    for i in range(cfg.n_prompts):
        premises = [cfg.premise.format(rel=cfg.relation, a=names[ctx[i, j]], b=names[ctx[i, j + 1]])
                    for j in range(0, task.context_len, 2)]
        src = names[chains[i, s.query_chain[i], 0]]
        prompts.append(" ".join(premises) + " " + cfg.question.format(rel=cfg.relation, src=src))
    return {"prompts": prompts, "chains": chains, "query": s.query_chain}


def score(logits: torch.Tensor, chains: np.ndarray, query: np.ndarray, name_ids: np.ndarray) -> dict[str, Any]:
    """Per-prompt measurements from next-token logits (n, V); ``name_ids[e]`` is entity e's token id."""
    n, C, _ = chains.shape
    rows = np.arange(n)
    tok = name_ids[chains]  # (n, C, 3) token ids of Src, Brg, End
    ends = torch.from_numpy(tok[:, :, 2])
    target = ends[rows, query]
    top1 = logits.argmax(-1)
    probs = torch.softmax(logits.float(), -1)
    p_cand = torch.softmax(logits.gather(1, ends).float(), -1)
    kinds = []
    for i in range(n):
        t = int(top1[i])
        if t == int(target[i]):
            kinds.append("correct")
        elif t in tok[i, :, 2]:
            kinds.append("distractor_end")
        elif t == tok[i, query[i], 1]:
            kinds.append("query_bridge")
        elif t == tok[i, query[i], 0]:
            kinds.append("query_source")
        elif t in tok[i]:
            kinds.append("other_entity")
        else:
            kinds.append("not_an_entity")
    return {
        "correct": (top1 == target).numpy(),
        "candidate_correct": (p_cand.argmax(-1) == torch.from_numpy(query)).numpy(),
        "p_target_among_candidates": p_cand[rows, query].numpy(),
        "p_target": probs[rows, target].numpy(),
        "p_all_ends": probs.gather(1, ends).sum(-1).numpy(),
        "kinds": kinds,
    }


def finetune_lora(lm: Any, prompts: list[str], targets: np.ndarray, cfg: LLMTwoHopConfig) -> dict[str, Any]:
    """LoRA (peft) on the attention projections of ``lm``'s model, in place: next-token cross-entropy of
    ``targets[i]`` after ``prompts[i]``, AdamW, ``cfg.finetune_steps`` batches of ``cfg.finetune_batch`` in order.
    The adapters stay in the model (``lm`` answers with them afterwards)."""
    from peft import LoraConfig, get_peft_model

    model = lm.hf_model
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    target = [m for m in ("q_proj", "k_proj", "v_proj", "o_proj") if m in names]
    # seeded before the adapters are created: their initialisation draws from torch's global generator
    torch.manual_seed(cfg.seed)
    peft_model = get_peft_model(model, LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, lora_dropout=0.0,
                                                  target_modules=target, bias="none"))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.finetune_lr, weight_decay=0.0)
    pad = lm.hf_tokenizer.pad_token_id or 0
    dev = next(model.parameters()).device
    peft_model.train()
    losses = []
    steps = range(cfg.finetune_steps)
    if cfg.progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="LoRA", leave=False)
    for step in steps:
        sl = slice(step * cfg.finetune_batch, (step + 1) * cfg.finetune_batch)
        seqs = [lm.encode(p) for p in prompts[sl]]
        T = max(len(x) for x in seqs)
        ids = torch.tensor([[pad] * (T - len(x)) + x for x in seqs], device=dev)  # left padding: the answer is last
        mask = torch.tensor([[0] * (T - len(x)) + [1] * len(x) for x in seqs], device=dev)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        logits = peft_model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].float()
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(targets[sl], device=dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 4))
    peft_model.eval()
    model.eval()
    return {"steps": cfg.finetune_steps, "batch": cfg.finetune_batch, "lr": cfg.finetune_lr, "lora_rank": cfg.lora_rank,
            "target_modules": target, "trainable_parameters": int(sum(p.numel() for p in params)),
            "loss_first": losses[0], "loss_last": losses[-1], "loss_by_step": losses}


class LLMTwoHopStudy(Study):
    name = "llm-two-hop"
    title = "Two-hop reasoning with distracting chains in a pretrained LLM (guessing among candidate Ends)"
    paper = "Guo et al., How Do LLMs Perform Two-Hop Reasoning in Context?, arXiv 2502.13913"
    config_cls = LLMTwoHopConfig

    def quick_config(self) -> LLMTwoHopConfig:
        """100 prompts per K (500 prompts), then a LoRA fine-tune of 30 steps x 8 K = 1 prompts and the probe again."""
        return LLMTwoHopConfig(n_prompts=100, finetune_steps=30)

    # the tiny random LM has a character tokenizer: single letters and digits as entities, the question ending in
    # a space so that the answer is one character
    tiny = ("n_prompts=8", "ks=[0,1,4]", "finetune_steps=2", "finetune_batch=4", "progress=false",
            "names=[" + ",".join("abcdefghijklmnopqrstuvwxyz0123456789") + "]",
            'question="Therefore, the {rel} of the {rel} of {src} is "')

    def control_config(self, cfg: LLMTwoHopConfig) -> LLMTwoHopConfig:
        """The same probe (and fine-tune) on the same architecture with its weights re-initialised."""
        return cfg.replace(random_init=True)

    needs_lm = True

    def lm_needs(self, cfg: LLMTwoHopConfig) -> tuple[str, ...]:
        return ("trainable",) if cfg.random_init or cfg.finetune_steps > 0 else ("logits",)

    def execute(self, cfg: LLMTwoHopConfig, out: Path, quick: bool, resume: bool) -> Result:
        started = time.perf_counter()
        lm = load_study_lm(cfg.lm, needs=self.lm_needs(cfg))
        if cfg.random_init:
            from lmlab.lm.control import randomize_weights

            randomize_weights(lm, cfg.seed)
        load_seconds = round(time.perf_counter() - started, 2)
        tok = lm.tokenizer
        lead = "" if cfg.question.endswith(" ") else " "
        names = single_token_names(tok, cfg.names or NAMES, lead)
        need = 3 * (max(cfg.ks) + 1)
        if len(names) < need:
            raise ConfigError(f"LLMTwoHopConfig.ks: only {len(names)} single-token names for this tokenizer, "
                              f"K={max(cfg.ks)} needs {need}; list more in LLMTwoHopConfig.names")
        name_ids = np.array([tok(lead + n, add_special_tokens=False)["input_ids"][0] for n in names])

        per_k: dict[int, dict[str, Any]] = {}
        examples: dict[int, str] = {}
        probe_started = time.perf_counter()
        for K in cfg.ks:
            data = make_prompts(cfg, K, names, cfg.seed)
            examples[K] = data["prompts"][0]
            logits = self._logits(lm, data["prompts"], cfg, K)
            per_k[K] = score(logits, data["chains"], data["query"], name_ids)
        probe_seconds = round(time.perf_counter() - probe_started, 2)
        table = {K: self._summarise(r, K) for K, r in per_k.items()}

        after: dict[int, dict[str, Any]] | None = None
        ft_info: dict[str, Any] = {}
        if cfg.finetune_steps > 0:
            t0 = time.perf_counter()
            # fresh K = 1 prompts (another seed than the probe's), the target End as the next-token label
            train = make_prompts(cfg.replace(n_prompts=cfg.finetune_steps * cfg.finetune_batch), 1, names, cfg.seed + 1)
            targets = name_ids[train["chains"][np.arange(len(train["query"])), train["query"], 2]]
            ft_info = finetune_lora(lm, train["prompts"], targets, cfg)
            ft_info["seconds"] = round(time.perf_counter() - t0, 2)
            after = {}
            for K in cfg.ks:
                data = make_prompts(cfg, K, names, cfg.seed)  # the very prompts probed before the fine-tune
                after[K] = self._summarise(score(self._logits(lm, data["prompts"], cfg, K), data["chains"],
                                                 data["query"], name_ids), K)

        claims = self._claims(table, cfg, after, ft_info)
        figures = self._figures(out, table, lm, after)
        metrics = {
            "model": getattr(lm, "name", cfg.lm.model),
            "load": getattr(lm, "load_info", {"seconds": load_seconds}),
            "probe_seconds": probe_seconds,
            "n_single_token_names": len(names),
            "per_k": {str(K): v for K, v in table.items()},
            **({"per_k_after_finetune": {str(K): v for K, v in after.items()}, "finetune": ft_info} if after else {}),
            "random_init": cfg.random_init,
            "example_prompts": {str(K): p for K, p in examples.items()},
        }
        st = model_stage(lm)
        return Result(claims, metrics, figures, "two_hop/1+text", stages={"model": st} if st else {})

    @staticmethod
    def _logits(lm: Any, prompts: list[str], cfg: LLMTwoHopConfig, K: int) -> torch.Tensor:
        chunks = []
        bs = cfg.lm.batch_size
        steps = range(0, len(prompts), bs)
        if cfg.progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"K={K}", leave=False)
        for i in steps:
            chunks.append(lm.next_token_logits(prompts[i:i + bs]).float())
        return torch.cat(chunks)

    @staticmethod
    def _summarise(r: dict[str, Any], K: int) -> dict[str, Any]:
        n = len(r["kinds"])
        errors = [k for k in r["kinds"] if k != "correct"]
        return {
            "n": n,
            "chance": round(1 / (K + 1), 4),
            "top1_accuracy": round(float(r["correct"].mean()), 4),
            "candidate_accuracy": round(float(r["candidate_correct"].mean()), 4),
            "p_target_among_candidates": round(float(r["p_target_among_candidates"].mean()), 4),
            "p_target": round(float(r["p_target"].mean()), 4),
            "p_all_ends": round(float(r["p_all_ends"].mean()), 4),
            "n_errors": len(errors),
            "errors": {k: errors.count(k) for k in ERROR_KINDS},
        }

    @staticmethod
    def _claims(t: dict[int, dict[str, Any]], cfg: LLMTwoHopConfig, after: dict[int, dict[str, Any]] | None = None,
                ft: dict[str, Any] | None = None) -> list[Claim]:
        claims = []
        if 0 in t:
            p0 = t[0]["p_target"]
            claims.append(Claim.judged(
                "answers_without_distractors", "With a single chain in context (no distractor) the LLM puts most of "
                "its next-token probability on the End entity",
                paper_value={"llama2_7b_p_target": PAPER_LLAMA2[0]},
                measured={"p_target": p0, "top1_accuracy": t[0]["top1_accuracy"]},
                rule=at_least(p0, MIN_P_TARGET_NO_DISTRACTOR, what="mean next-token probability of the target End"),
                source="[secondary]"))
        ks = [K for K in t if K >= 1]
        if ks:
            gaps = {K: round(t[K]["p_target"] - 1 / (K + 1), 4) for K in ks}
            claims.append(Claim.judged(
                "guesses_among_ends", "With K distracting chains the target End gets about 1/(K+1) of the next-token "
                "probability (whole vocabulary): the model guesses uniformly among the chains' Ends",
                paper_value={str(K): PAPER_LLAMA2.get(K) for K in ks},
                measured={"p_target": {str(K): t[K]["p_target"] for K in ks},
                          "minus_1_over_k_plus_1": {str(K): g for K, g in gaps.items()},
                          "p_all_ends": {str(K): t[K]["p_all_ends"] for K in ks},
                          "p_target_among_candidates": {str(K): t[K]["p_target_among_candidates"] for K in ks}},
                rule=is_true(all(within(t[K]["p_target"], 1 / (K + 1), GUESS_REL_TOL, relative=True).ok for K in ks),
                             f"|P(target) - 1/(K+1)| <= {GUESS_REL_TOL:g} x 1/(K+1) for every K >= 1 (P over the whole "
                             "vocabulary; at K = 4: 0.15..0.25)"),
                source="[secondary] Llama-2-7B next-token probabilities, ~1/(K+1)"))
            errs = {k: sum(t[K]["errors"][k] for K in ks) for k in ERROR_KINDS}
            entity_errs = sum(errs[k] for k in ERROR_KINDS if k != "not_an_entity")
            share = errs["distractor_end"] / entity_errs if entity_errs else float("nan")
            # If wrong answers picked any other context entity uniformly: K distractor Ends of 3K+2 entities.
            n_err = {K: sum(t[K]["errors"][k] for k in ERROR_KINDS if k != "not_an_entity") for K in ks}
            baseline = sum(n_err[K] * K / (3 * K + 2) for K in ks) / entity_errs if entity_errs else float("nan")
            what = "share of the wrong top-1 answers naming a context entity that are distractor Ends"
            entity_share = entity_errs / max(1, sum(errs.values()))
            claims.append(Claim.judged(
                "errors_on_distractor_ends", "Wrong answers land on the distracting chains' Ends (guessing among "
                "candidates), not on other entities in the context",
                paper_value="errors are distractor Ends (qualitative)",
                measured={"share_of_entity_errors_on_distractor_ends": round(share, 4),
                          "uniform_over_context_entities_baseline": round(baseline, 4),
                          "errors_by_kind": errs,
                          "share_of_errors_not_an_entity": round(errs["not_an_entity"] / max(1, sum(errs.values())), 4)},
                # no entity error at all: the share is NaN and both rules fail
                rule=all_of(at_least(entity_share, MIN_ENTITY_ERRORS, what="share of wrong answers naming a context "
                                     "entity (the model reads the context)"),
                            at_least(share, MIN_DISTRACTOR_SHARE, what=what),
                            greater(share, baseline, what="it", than="the uniform baseline")),
                source="[abstract]"))
        lora = "A short LoRA fine-tune on K=1 distractor makes the LLM answer correctly for all K"
        if after is None:
            claims.append(Claim.judged(
                "lora_fixes_it", lora, paper_value={"llama2_7b_after_lora": PAPER_LLAMA2_AFTER_LORA}, measured=None,
                rule=not_comparable("not run at this config: finetune_steps = 0"), source="[secondary]"))
        else:
            ks1 = [K for K in after if K >= 1] or list(after)
            mean_after = float(np.mean([after[K]["p_target"] for K in ks1]))
            mean_before = float(np.mean([t[K]["p_target"] for K in ks1]))
            claims.append(Claim.judged(
                "lora_fixes_it", lora, paper_value={"llama2_7b_after_lora": PAPER_LLAMA2_AFTER_LORA},
                measured={"p_target_after": {str(K): after[K]["p_target"] for K in after},
                          "p_target_before": {str(K): t[K]["p_target"] for K in after},
                          "top1_after": {str(K): after[K]["top1_accuracy"] for K in after},
                          "mean_p_target_k_ge_1_after": round(mean_after, 4),
                          "mean_p_target_k_ge_1_before": round(mean_before, 4), "finetune": ft},
                rule=all_of(at_least(mean_after, MIN_P_TARGET_AFTER_FT, what=f"mean P(target) over K in {ks1} after "
                                     f"{cfg.finetune_steps} LoRA steps on K = 1 (the probe's own prompts, not trained on)"),
                            greater(mean_after, mean_before, what="it", than="before the fine-tune")),
                source="[secondary]", scale=f"LoRA rank {cfg.lora_rank}, {cfg.finetune_steps} steps x "
                                            f"{cfg.finetune_batch} prompts"))
        return claims

    @staticmethod
    def _figures(out: Path, t: dict[int, dict[str, Any]], lm: Any, after: dict[int, dict[str, Any]] | None = None) -> list[str]:
        plt = pyplot()
        ks = sorted(t)
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        x = np.array(ks)
        ax.plot(x, [1 / (K + 1) for K in ks], "k--", label="guessing: 1/(K+1)")
        ax.plot(x, [t[K]["p_target_among_candidates"] for K in ks], "o-", label="P(target | candidate Ends)")
        ax.plot(x, [t[K]["candidate_accuracy"] for K in ks], "s-", label="accuracy among candidates")
        ax.plot(x, [t[K]["top1_accuracy"] for K in ks], "^-", label="top-1 accuracy (whole vocabulary)")
        ax.plot(x, [t[K]["p_target"] for K in ks], "v:", label="P(target) (whole vocabulary)")
        ax.plot(x, [PAPER_LLAMA2.get(K, np.nan) for K in ks], "x", color="gray", ms=8, label="paper: Llama-2-7B P(target)")
        if after:
            ax.plot(x, [after[K]["p_target"] for K in ks], "D-", color="C5", label="P(target) after LoRA on K = 1")
        ax.set_xlabel("K (distracting chains)")
        ax.set_ylabel("probability / accuracy")
        ax.set_ylim(0, 1.05)
        ax.set_xticks(x)
        ax.set_title(f"{getattr(lm, 'name', 'LLM')}: two-hop with K distractors", fontsize=10)
        ax.legend(fontsize=7.5)
        bottom = np.zeros(len(ks))
        kinds = ("correct",) + ERROR_KINDS
        colors = ("#2ca02c", "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f")
        for kind, color in zip(kinds, colors):
            vals = np.array([(t[K]["n"] - t[K]["n_errors"]) if kind == "correct" else t[K]["errors"][kind] for K in ks])
            frac = vals / np.array([t[K]["n"] for K in ks])
            ax2.bar(x, frac, bottom=bottom, color=color, label=kind.replace("_", " "))
            bottom += frac
        ax2.set_xlabel("K (distracting chains)")
        ax2.set_ylabel("fraction of prompts")
        ax2.set_xticks(x)
        ax2.set_title("top-1 answer: correct, or where the error lands", fontsize=10)
        ax2.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return [save_figure(fig, out, "llm-two-hop-accuracy.png")]
