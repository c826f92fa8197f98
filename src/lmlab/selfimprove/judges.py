"""Judges score one prompt's K responses at a time (a *group*), so pointwise and pairwise judges share one
interface::

    scores = judge.score_groups(groups)     # one float array per group; NaN = the judge gave no usable score

==================  =====================================================================================
``verifiable``      1.0 if the response's final answer equals the generated problem's exact answer, else 0.0
                    (:func:`lmlab.rewardeval.builder.check`)
``rm:SPEC``         any reward model of :mod:`lmlab.rewardeval.models` (``rm:length``, ``rm:judge``,
                    ``rm:hf:PATH``, ...): its scalar reward
``rubric``          LLM-as-a-judge with the additive 5-point rubric, ``n`` sampled judgments per response,
                    the parsed scores averaged (unparsed judgments dropped; the parse rate is kept)
``pairwise``        an LLM compares every ordered pair of the K responses (both positions); the verdicts
                    become per-response Bradley-Terry scores
==================  =====================================================================================

A judge that returns something other than one finite-or-NaN number per response raises :class:`JudgeError`
(one line naming the judge).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmlab.config import ConfigError
from lmlab.selfimprove.prompts import JUDGE_TEMPLATE, PAIRWISE_TEMPLATE, parse_score, parse_winner


JUDGE_PARSERS = ("strict", "lenient")


class JudgeError(ConfigError):
    """A judge returned unusable output (wrong count, non-numbers, nothing parseable)."""


@dataclass
class Group:
    """One prompt's responses to judge. ``answer``: the exact answer of a generated problem (verifiable judge)."""

    instruction: str
    responses: list[str]
    answer: int | None = None
    id: str = ""


@dataclass
class JudgeStats:
    judged: int = 0  # judgments asked for
    parsed: int = 0  # judgments that gave a score / verdict

    @property
    def parse_rate(self) -> float:
        return self.parsed / self.judged if self.judged else float("nan")


class Judge:
    """Base class: ``score_groups(groups) -> list[np.ndarray]`` (one score per response, NaN = no score)."""

    name = "judge"
    #: the judge generates text with an LM (its parse rate is reported)
    generative = False

    def __init__(self) -> None:
        self.stats = JudgeStats()

    def _score(self, groups: Sequence[Group]) -> list[Any]:
        raise NotImplementedError

    def score_groups(self, groups: Sequence[Group]) -> list[np.ndarray]:
        out = self._score(groups)
        return [check_scores(self.name, g, s) for g, s in zip(groups, _as_list(self.name, out, len(groups)))]


def _as_list(name: str, out: Any, n: int) -> list[Any]:
    if not isinstance(out, (list, tuple)) or len(out) != n:
        raise JudgeError(f"judge '{name}' returned {type(out).__name__} "
                         f"{'of length ' + str(len(out)) if hasattr(out, '__len__') else ''} for {n} groups; "
                         "it must return one score array per group")
    return list(out)


def check_scores(name: str, group: Group, scores: Any) -> np.ndarray:
    """``scores`` as a float array with one entry per response; one-line :class:`JudgeError` otherwise."""
    try:
        arr = np.asarray(scores, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise JudgeError(f"judge '{name}' returned non-numeric scores ({str(scores)[:60]!r}) for prompt "
                         f"{group.id or group.instruction[:40]!r}; a judge returns one float (or NaN) per response") from None
    if arr.shape[0] != len(group.responses):
        raise JudgeError(f"judge '{name}' returned {arr.shape[0]} scores for {len(group.responses)} responses of "
                         f"prompt {group.id or group.instruction[:40]!r}; it must return one per response")
    if np.isinf(arr).any():
        raise JudgeError(f"judge '{name}' returned an infinite score for prompt {group.id or group.instruction[:40]!r}")
    return arr


def group_seed(seed: int, group: Group, index: int) -> int:
    """A generative judge's sampling seed for one group: from the prompt's id (so a resumed run, which judges
    fewer groups per call, draws the same judgments), else from its position."""
    import zlib

    return (seed * 100_003 + (zlib.crc32(group.id.encode()) if group.id else index)) % (2**31 - 1)


class VerifiableJudge(Judge):
    """1.0 when the response's final answer is the problem's exact answer, else 0.0."""

    name = "verifiable"

    def _score(self, groups: Sequence[Group]) -> list[Any]:
        from lmlab.rewardeval.builder import extract_answer

        out = []
        for g in groups:
            if g.answer is None:
                raise JudgeError(f"judge 'verifiable' needs problems with exact answers; prompt "
                                 f"{g.id or g.instruction[:40]!r} has none (use judge=rubric or judge=rm:NAME)")
            out.append([float(extract_answer(r) == g.answer) for r in g.responses])
        return out


class RewardModelJudge(Judge):
    """A reward model from :mod:`lmlab.rewardeval.models` (built with ``build_rm``): its reward per response."""

    def __init__(self, rm: Any):
        super().__init__()
        self.rm = rm
        self.name = f"rm:{getattr(rm, 'spec', '') or getattr(rm, 'name', 'rm')}"

    def _score(self, groups: Sequence[Group]) -> list[Any]:
        prompts = [g.instruction for g in groups for _ in g.responses]
        responses = [r for g in groups for r in g.responses]
        flat = np.asarray(self.rm.score_batch(prompts, responses), dtype=float) if responses else np.zeros(0)
        out, i = [], 0
        for g in groups:
            out.append(flat[i:i + len(g.responses)])
            i += len(g.responses)
        return out


@dataclass
class GenConfig:
    """How a generative judge samples its judgments."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 96
    seed: int = 0
    #: rubric scores: "strict" (the rubric's "Score: N" only) or "lenient" (also other labelled score
    #: statements, :func:`lmlab.selfimprove.prompts.parse_score`)
    parser: str = "strict"


class RubricJudge(Judge):
    """LLM-as-a-judge with the additive 5-point rubric. Keeps every judgment (``last_judgments``) so the
    meta-judge can compare them; the score of a response is the mean of its parsed judgments (NaN if none)."""

    name = "rubric"
    generative = True

    def __init__(self, lm: Any, gen: GenConfig | None = None, template: str = JUDGE_TEMPLATE):
        super().__init__()
        self.lm, self.gen, self.template = lm, gen or GenConfig(), template
        if self.gen.parser not in JUDGE_PARSERS:
            raise ConfigError(f"judge parser {self.gen.parser!r} is not one of {', '.join(JUDGE_PARSERS)}")
        self.last_judgments: list[list[list[tuple[str, float]]]] = []

    def judge_texts(self, instructions: Sequence[str], responses: Sequence[str], seed: int = 0) -> list[list[str]]:
        """``gen.n`` judgments per (instruction, response), as generated text."""
        prompts = [self.lm.chat_prompt(self.template.format(instruction=i, response=r))
                   for i, r in zip(instructions, responses)]
        texts = self.lm.generate([p for p in prompts for _ in range(self.gen.n)], max_new_tokens=self.gen.max_new_tokens,
                                 temperature=self.gen.temperature, top_p=self.gen.top_p, seed=seed)
        if len(texts) != len(prompts) * self.gen.n:
            raise JudgeError(f"judge '{self.name}': the LM returned {len(texts)} judgments for {len(prompts) * self.gen.n}")
        return [texts[i * self.gen.n:(i + 1) * self.gen.n] for i in range(len(prompts))]

    def _all_texts(self, groups: Sequence[Group]) -> list[list[list[str]]]:
        """Per group, per response, ``gen.n`` judgments. With the engine, all groups' rows are decoded together,
        row j of a group seeded from (its group seed, j); otherwise one ``lm.generate`` call per group."""
        from lmlab.selfimprove.generation import engine_of, generate_rows, row_seeds

        if engine_of(self.lm) is None:
            return [self.judge_texts([g.instruction] * len(g.responses), g.responses,
                                     seed=group_seed(self.gen.seed, g, gi)) if g.responses else []
                    for gi, g in enumerate(groups)]
        n = self.gen.n
        prompts, seeds = [], []
        for gi, g in enumerate(groups):
            prompts += [self.lm.chat_prompt(self.template.format(instruction=g.instruction, response=r))
                        for r in g.responses for _ in range(n)]
            seeds += row_seeds(group_seed(self.gen.seed, g, gi), len(g.responses) * n)
        texts = generate_rows(self.lm, prompts, self.gen.max_new_tokens, self.gen.temperature, self.gen.top_p,
                              seeds=seeds)
        out, i = [], 0
        for g in groups:
            out.append([texts[i + k * n:i + (k + 1) * n] for k in range(len(g.responses))])
            i += len(g.responses) * n
        return out

    def _score(self, groups: Sequence[Group]) -> list[Any]:
        out: list[Any] = []
        self.last_judgments = []
        for texts in self._all_texts(groups):
            per_resp, scores = [], []
            for ts in texts:
                parsed = [(t, parse_score(t, lenient=self.gen.parser == "lenient")) for t in ts]
                self.stats.judged += len(parsed)
                ok = [s for _, s in parsed if s is not None]
                self.stats.parsed += len(ok)
                per_resp.append([(t, float("nan") if s is None else s) for t, s in parsed])
                scores.append(float(np.mean(ok)) if ok else float("nan"))
            self.last_judgments.append(per_resp)
            out.append(scores)
        return out


class PairwiseJudge(Judge):
    """An LLM compares every ordered pair (i, j), i != j, of a group's responses (so each pair in both
    positions); verdicts (unparsed = tie) -> Bradley-Terry scores per response."""

    name = "pairwise"
    generative = True

    def __init__(self, lm: Any, gen: GenConfig | None = None, template: str = PAIRWISE_TEMPLATE):
        super().__init__()
        self.lm, self.gen, self.template = lm, gen or GenConfig(), template

    def verdicts(self, instruction: str, responses: Sequence[str], seed: int = 0) -> list[tuple[int, int, int | None]]:
        order = list(itertools.permutations(range(len(responses)), 2))
        prompts = [self.lm.chat_prompt(self.template.format(instruction=instruction, response_a=responses[i],
                                                            response_b=responses[j])) for i, j in order]
        texts = self.lm.generate(prompts, max_new_tokens=self.gen.max_new_tokens, temperature=self.gen.temperature,
                                 top_p=self.gen.top_p, seed=seed) if prompts else []
        return [(i, j, parse_winner(t)) for (i, j), t in zip(order, texts)]

    def _score(self, groups: Sequence[Group]) -> list[Any]:
        from lmlab.selfimprove.scoring import bradley_terry_scores

        out = []
        for gi, g in enumerate(groups):
            v = self.verdicts(g.instruction, g.responses, seed=group_seed(self.gen.seed, g, gi))
            self.stats.judged += len(v)
            self.stats.parsed += sum(r is not None for _, _, r in v)
            outcome = [0.5 if r is None else (1.0 if r == 1 else 0.0) for _, _, r in v]
            out.append(bradley_terry_scores(len(g.responses), [i for i, _, _ in v], [j for _, j, _ in v], outcome))
        return out


JUDGE_NAMES = ("verifiable", "rubric", "pairwise", "rm:NAME")


def build_judge(spec: str, lm: Any = None, gen: GenConfig | None = None) -> Judge:
    """A judge from its spec (see the module table); ``lm`` is the judging LM (the policy itself when
    self-judging)."""
    if spec == "verifiable":
        return VerifiableJudge()
    if spec in ("rubric", "pairwise"):
        if lm is None:
            raise ConfigError(f"judge '{spec}' needs an LM to judge with")
        return RubricJudge(lm, gen) if spec == "rubric" else PairwiseJudge(lm, gen)
    if spec.startswith("rm:"):
        from lmlab.rewardeval.models import build_rm, rm_class

        cls, _ = rm_class(spec[3:])
        return RewardModelJudge(build_rm(spec[3:], lm=lm if cls.needs_lm else None))
    raise ConfigError(f"judge {spec!r} is not one of {', '.join(JUDGE_NAMES)}")
