"""The prompts of TPO and Meta-Rewarding, and their parsers.

Wording: the thought prompts follow Figure 2 of Wu et al. 2024 (TPO, arXiv 2410.10630), the judge prompt is the
additive 5-point rubric of Self-Rewarding LMs (Yuan et al. 2024) that Meta-Rewarding (arXiv 2407.19594) reuses,
and the meta-judge prompt follows Meta-Rewarding's Figure 2. Neither paper released code; the texts here are
from the papers' figures as we recall them (spec: [recollection]), so small wording differences are possible.

Parsers return ``None`` for a malformed output; callers drop and count those.

>>> parse_thought("Here is my thought process: add them. Here is my response: 7", "generic")
('add them.', '7')
>>> parse_thought("no delimiter at all", "generic") is None
True
>>> parse_score("The response is relevant... Score: 4"), parse_score("no score")
(4.0, None)
>>> parse_winner("...so Judgment B is more accurate. Winner: Judgment B")
-1
"""

from __future__ import annotations

import re

THOUGHT_KINDS = ("none", "generic", "specific")

#: TPO's generic thought prompt: think first, then respond (thought and response split at a fixed phrase)
GENERIC_THOUGHT = ("Respond to the following user query in a comprehensive and detailed way. You can write down "
                   "your thought process before responding. Write your thoughts after \u201cHere is my thought "
                   "process:\u201d and write your response after \u201cHere is my response:\u201d.\n\n"
                   "User query: {instruction}")
#: TPO's specific thought prompt: the thought holds a draft response and its evaluation; the response follows <R>
SPECIFIC_THOUGHT = ("Respond to the following user query in a comprehensive and detailed way. But first write down "
                    "your internal thoughts. This must include your draft response and its evaluation. After this, "
                    "write your final response after \u201c<R>\u201d.\n\nUser query: {instruction}")

GENERIC_THOUGHT_START = "Here is my thought process:"
GENERIC_RESPONSE_START = "Here is my response:"
SPECIFIC_RESPONSE_START = "<R>"

#: Self-Rewarding's additive 5-point judge prompt (LLM-as-a-judge), reused by Meta-Rewarding
RUBRIC = (
    "Review the user's question and the corresponding response using the additive 5-point scoring system "
    "described below. Points are accumulated based on the satisfaction of each criterion:\n"
    "- Add 1 point if the response is relevant and provides some information related to the user's inquiry, even if "
    "it is incomplete or contains some irrelevant content.\n"
    "- Add another point if the response addresses a substantial portion of the user's question, but does not "
    "completely resolve the query or provide a direct answer.\n"
    "- Award a third point if the response answers the basic elements of the user's question in a useful way, "
    "regardless of whether it seems to have been written by an AI Assistant or if it has elements typically found "
    "in blogs or search results.\n"
    "- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, addressing the "
    "user's question directly and comprehensively, and is well-organized and helpful, even if there is slight room "
    "for improvement in clarity, conciseness or focus.\n"
    "- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI Assistant, "
    "without extraneous information, reflecting expert knowledge, and demonstrating a high-quality, engaging, and "
    "insightful answer.")
JUDGE_TEMPLATE = (
    RUBRIC + "\n\nUser: {instruction}\n<response>{response}</response>\n\n"
    "After examining the user's instruction and the response:\n"
    "- Briefly justify your total score, up to 100 words.\n"
    "- Conclude with the score using the format: \u201cScore: <total points>\u201d\n"
    "Remember to assess from the AI Assistant perspective, utilizing web search knowledge as necessary. To evaluate "
    "the response in alignment with this additive scoring model, we'll systematically attribute points based on the "
    "outlined criteria.")
META_JUDGE_TEMPLATE = (
    "Review the user's question and the corresponding response, along with two judgments. Determine which judgment "
    "is more accurate according to the rubric provided below. The rubric used for the initial judgments is as "
    "follows:\n" + RUBRIC + "\n\nUser: {instruction}\n<response>{response}</response>\n\n"
    "<judgment A>{judgment_a}</judgment A>\n\n<judgment B>{judgment_b}</judgment B>\n\n"
    "After examining the original question, response, and both judgments:\n"
    "- Explain which judgment is more accurate according to the original rubric and why. Consider factors such as "
    "adherence to the rubric, accuracy in evaluating the response, and consistency in applying the criteria.\n"
    "- Conclude with a clear statement of which judgment is better using the format: "
    "\u201cWinner: [Judgment A | Judgment B]\u201d")
#: a pairwise judge (both orders are asked; outcomes -> Bradley-Terry scores)
PAIRWISE_TEMPLATE = (
    "Which of the two responses answers the user's question better? Judge helpfulness, correctness and clarity; the "
    "order of the responses does not matter.\n\nUser: {instruction}\n\n<response A>{response_a}</response A>\n\n"
    "<response B>{response_b}</response B>\n\nExplain briefly, then conclude with \u201cWinner: A\u201d or "
    "\u201cWinner: B\u201d.")


def thought_prompt(instruction: str, kind: str) -> str:
    """The user message for ``instruction`` under a thought prompt (``none``: the instruction itself)."""
    if kind == "none":
        return instruction
    if kind == "generic":
        return GENERIC_THOUGHT.format(instruction=instruction)
    if kind == "specific":
        return SPECIFIC_THOUGHT.format(instruction=instruction)
    raise ValueError(f"thought kind {kind!r} is not one of {', '.join(THOUGHT_KINDS)}")


def parse_thought(text: str, kind: str) -> tuple[str, str] | None:
    """Split an output into (thought, response); None when the delimiter is missing or the response is empty.

    ``none`` (the direct baseline): no thought; an empty output is malformed.
    """
    if kind == "none":
        t = text.strip()
        return ("", t) if t else None
    delim = GENERIC_RESPONSE_START if kind == "generic" else SPECIFIC_RESPONSE_START if kind == "specific" else None
    if delim is None:
        raise ValueError(f"thought kind {kind!r} is not one of {', '.join(THOUGHT_KINDS)}")
    if delim not in text:
        return None
    thought, _, response = text.partition(delim)  # the first delimiter ends the thought
    thought = thought.strip()
    if kind == "generic" and thought.startswith(GENERIC_THOUGHT_START):
        thought = thought[len(GENERIC_THOUGHT_START):].strip()
    response = response.strip()
    return (thought, response) if response else None


_SCORE_RE = re.compile(r"Score:\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_WINNER_RE = re.compile(r"Winner:\s*\**\s*\[?\s*(?:Judge?ment|Response)?\s*([AB])\b", re.IGNORECASE)
_NUM = r"\**\s*<?\s*(\d+(?:\.\d+)?)(?!\s*[-+*x\u00d7]\s*\d)(?![\d.]*\d)"
#: labelled score statements a small judge writes instead of "Score: N" (matched case-insensitively):
#: "Score = 4", "Score - 4", "Score: <3>", "The score is 3", "the final score was 2", "the score given is: 1",
#: "a total score of 2", "the score for this response is 5 points", "3/5", "4 out of 5". Only a score named as
#: such counts ("adding a score of 1 to ...", "the score provided by Lily is 2" are not taken), numbers inside
#: arithmetic ("score of 1 + 9") are not taken, and no number is inferred from prose. Out-of-range scores are dropped.
_LENIENT_RE = re.compile(
    r"(?:\b(?:(?:total|final|overall)\s+score(?:\s+(?:given|awarded|assigned))?\s*(?:[:=\-\u2013]|\bis\b:?|\bof\b|\bwas\b:?)"
    r"|score(?:\s+(?:given|awarded|assigned|for\s+(?:this|the)\s+(?:response|answer|question)))?"
    r"\s*(?:[:=\-\u2013]|\bis\b:?|\bwas\b:?))\s*" + _NUM + ")"
    r"|(?:\b(\d+(?:\.\d+)?)\s*(?:/\s*5|out of 5)\b)", re.IGNORECASE)


def parse_score(text: str, lo: float = 0.0, hi: float = 5.0, lenient: bool = False) -> float | None:
    """The last "Score: N" of a judgment, if it lies in [lo, hi]; else None (the paper drops such judgments).

    ``lenient``: the last labelled score statement of any form in ``_LENIENT_RE`` ("The score is 3", "4/5", ...)
    when the judgment has no "Score: N"; still None when that number lies outside [lo, hi].
    """
    found = _SCORE_RE.findall(text or "")
    if not found and lenient:
        found = [a or b for a, b in _LENIENT_RE.findall(text or "")]
    if not found:
        return None
    v = float(found[-1])
    return v if lo <= v <= hi else None


def parse_winner(text: str) -> int | None:
    """+1 when the verdict names A (the first position), -1 for B, None when it names neither."""
    found = _WINNER_RE.findall(text or "")
    if not found:
        return None
    return 1 if found[-1].upper() == "A" else -1
