"""Hard question pairs for prompt caching, generated from a small bundled knowledge base.

A question is rendered from a *key*: a tuple that fixes its answer, ``(family, entity, slot...)``.
Two questions may share a cached answer exactly when their keys are equal (the knowledge base is the
teacher: p(x, x') = 1 if key(x) == key(x') else 0). Positives are two different templates of the same
key; hard negatives change exactly one field of the key and keep the wording as close as possible:

================  ==========================================================================
entity swap       What is the capital of Peru?          / What is the capital of Chile?
attribute swap    What currency is used in Peru?        / What language is spoken in Peru?
year change       What was the population of Peru in 2001? / ... of Peru in 2011?
negation          Is Lima the capital of Peru?           / Is Lima not the capital of Peru?
reversed direction  Did Peru's exports rise from 2005 to 2010? / Did Peru's exports fall from 2005 to 2010?
================  ==========================================================================

Train and test use disjoint entities *and* disjoint templates (each family's templates are split in
two), so a held-out AUC measures generalisation to new wording about new entities.

>>> kb = KnowledgeBase()
>>> pairs = make_pairs(kb, split="test", n=20, seed=0)
>>> sorted({p.kind for p in pairs}) <= sorted(PAIR_KINDS)
True
>>> all((p.label == 1) == (p.key_a == p.key_b) for p in pairs)
True
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

VERSION = "cache-pairs/1"

Split = Literal["train", "test"]
Key = tuple  # (family, entity, *slots)

PAIR_KINDS = ("paraphrase", "entity_swap", "attribute_swap", "year_change", "negation", "reversed_direction")

# -- knowledge base ---------------------------------------------------------------------------------------
# Real countries with their capitals, currencies and languages (public facts); numbers that the
# questions ask about (populations, exports...) are generated, since only key equality labels a pair.
COUNTRIES: tuple[tuple[str, str, str, str], ...] = (
    ("France", "Paris", "euro", "French"), ("Germany", "Berlin", "euro", "German"),
    ("Italy", "Rome", "euro", "Italian"), ("Spain", "Madrid", "euro", "Spanish"),
    ("Portugal", "Lisbon", "euro", "Portuguese"), ("Austria", "Vienna", "euro", "German"),
    ("Greece", "Athens", "euro", "Greek"), ("Finland", "Helsinki", "euro", "Finnish"),
    ("Ireland", "Dublin", "euro", "English"), ("Belgium", "Brussels", "euro", "Dutch"),
    ("Netherlands", "Amsterdam", "euro", "Dutch"), ("Poland", "Warsaw", "zloty", "Polish"),
    ("Sweden", "Stockholm", "krona", "Swedish"), ("Norway", "Oslo", "krone", "Norwegian"),
    ("Denmark", "Copenhagen", "krone", "Danish"), ("Hungary", "Budapest", "forint", "Hungarian"),
    ("Czechia", "Prague", "koruna", "Czech"), ("Romania", "Bucharest", "leu", "Romanian"),
    ("Bulgaria", "Sofia", "lev", "Bulgarian"), ("Switzerland", "Bern", "franc", "German"),
    ("Japan", "Tokyo", "yen", "Japanese"), ("China", "Beijing", "yuan", "Mandarin"),
    ("India", "New Delhi", "rupee", "Hindi"), ("Pakistan", "Islamabad", "rupee", "Urdu"),
    ("Thailand", "Bangkok", "baht", "Thai"), ("Vietnam", "Hanoi", "dong", "Vietnamese"),
    ("Indonesia", "Jakarta", "rupiah", "Indonesian"), ("Philippines", "Manila", "peso", "Filipino"),
    ("South Korea", "Seoul", "won", "Korean"), ("Malaysia", "Kuala Lumpur", "ringgit", "Malay"),
    ("Turkey", "Ankara", "lira", "Turkish"), ("Iran", "Tehran", "rial", "Persian"),
    ("Egypt", "Cairo", "pound", "Arabic"), ("Morocco", "Rabat", "dirham", "Arabic"),
    ("Kenya", "Nairobi", "shilling", "Swahili"), ("Nigeria", "Abuja", "naira", "English"),
    ("Ghana", "Accra", "cedi", "English"), ("Ethiopia", "Addis Ababa", "birr", "Amharic"),
    ("South Africa", "Pretoria", "rand", "Zulu"), ("Tanzania", "Dodoma", "shilling", "Swahili"),
    ("Brazil", "Brasilia", "real", "Portuguese"), ("Argentina", "Buenos Aires", "peso", "Spanish"),
    ("Chile", "Santiago", "peso", "Spanish"), ("Peru", "Lima", "sol", "Spanish"),
    ("Colombia", "Bogota", "peso", "Spanish"), ("Mexico", "Mexico City", "peso", "Spanish"),
    ("Canada", "Ottawa", "dollar", "English"), ("Australia", "Canberra", "dollar", "English"),
    ("New Zealand", "Wellington", "dollar", "English"), ("Cuba", "Havana", "peso", "Spanish"),
    ("Venezuela", "Caracas", "bolivar", "Spanish"), ("Ecuador", "Quito", "dollar", "Spanish"),
    ("Uruguay", "Montevideo", "peso", "Spanish"), ("Bolivia", "Sucre", "boliviano", "Spanish"),
    ("Iceland", "Reykjavik", "krona", "Icelandic"), ("Ukraine", "Kyiv", "hryvnia", "Ukrainian"),
    ("Croatia", "Zagreb", "euro", "Croatian"), ("Serbia", "Belgrade", "dinar", "Serbian"),
    ("Nepal", "Kathmandu", "rupee", "Nepali"), ("Mongolia", "Ulaanbaatar", "togrog", "Mongolian"),
)
FIRST = ("Anna", "Boris", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Irene", "Jonas", "Karin", "Leo",
         "Maya", "Nils", "Olga", "Pablo", "Rosa", "Stefan", "Tara", "Victor", "Wanda", "Yusuf", "Zoe", "Omar")
LAST = ("Adler", "Brandt", "Costa", "Duval", "Eriksen", "Ferrari", "Gomez", "Hartmann", "Ivanova", "Jansen",
        "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Silva", "Tanaka")
JOBS = ("chemist", "painter", "architect", "composer", "surgeon", "novelist", "engineer", "economist")
INDICATORS = ("exports", "population", "GDP", "unemployment rate", "inflation rate", "rice production",
              "tourist arrivals", "life expectancy")
YEARS = tuple(range(1990, 2024))


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


class KnowledgeBase:
    """Countries (real capitals, currencies, languages) and generated people; the answer of every key."""

    def __init__(self) -> None:
        self.countries = {c: (cap, cur, lang) for c, cap, cur, lang in COUNTRIES}
        self.people = [f"{f} {l}" for f in FIRST for l in LAST]

    def entities(self, family: str) -> list[str]:
        return self.people if FAMILIES[family]["entity"] == "person" else list(self.countries)

    def answer(self, key: Key) -> str:
        """The canonical answer of a key (what the cache stores as the response)."""
        fam, ent, *slots = key
        if fam == "capital":
            return f"The capital of {ent} is {self.countries[ent][0]}."
        if fam == "currency":
            return f"{ent} uses the {self.countries[ent][1]}."
        if fam == "language":
            return f"The main language of {ent} is {self.countries[ent][2]}."
        if fam == "is_capital":
            city, polarity = slots
            truth = self.countries[ent][0] == city
            return "Yes." if truth == (polarity == "pos") else "No."
        if fam == "population":
            (year,) = slots
            return f"{ent} had {5 + _h(ent, year) % 200} million inhabitants in {year}."
        if fam == "change":
            ind, y1, y2, direction = slots
            went_up = (_h(ent, ind, y1, y2) % 2 == 0) == (y1 < y2)
            return f"{'Yes' if went_up == (direction == 'up') else 'No'}: {ind} of {ent}, {y1} to {y2}."
        if fam == "born_year":
            return f"{ent} was born in {1900 + _h(ent) % 100}."
        if fam == "born_place":
            return f"{ent} was born in {list(self.countries.values())[_h(ent, 'p') % len(self.countries)][0]}."
        if fam == "job":
            return f"{ent} is a {JOBS[_h(ent, 'j') % len(JOBS)]}."
        raise KeyError(f"unknown question family {fam!r}")


# Each family: entity type, templates (the first half are train templates, the second half test ones),
# and which hard negatives it supports. Templates use {e} (entity) and slot names.
FAMILIES: dict[str, dict] = {
    "capital": {"entity": "country", "attr_group": "country", "templates": (
        "What is the capital of {e}?", "Which city is the capital of {e}?", "Name the capital city of {e}.",
        "Tell me the capital of {e}.", "{e}'s capital is which city?", "What city serves as the capital of {e}?",
        "Which city is {e}'s seat of government?", "capital of {e}?")},
    "currency": {"entity": "country", "attr_group": "country", "templates": (
        "What currency is used in {e}?", "Which currency does {e} use?", "What is the official currency of {e}?",
        "What money do people pay with in {e}?", "{e} uses which currency?", "Name the currency of {e}.",
        "What is the legal tender in {e}?", "currency of {e}?")},
    "language": {"entity": "country", "attr_group": "country", "templates": (
        "What language is spoken in {e}?", "Which language do people in {e} speak?",
        "What is the main language of {e}?", "What do most people in {e} speak?", "{e} speaks which language?",
        "Name the official language of {e}.", "In which language do people in {e} mostly talk?",
        "language of {e}?")},
    "population": {"entity": "country", "attr_group": "country_year", "templates": (
        "What was the population of {e} in {year}?", "How many people lived in {e} in {year}?",
        "How many inhabitants did {e} have in {year}?", "What was {e}'s population in {year}?",
        "In {year}, how many people lived in {e}?", "How populous was {e} in {year}?",
        "Give the number of residents of {e} in {year}.", "population of {e} in {year}?")},
    "is_capital": {"entity": "country", "attr_group": "yesno", "templates": (
        "Is {city} {neg}the capital of {e}?", "Is it true that {city} is {neg}the capital of {e}?",
        "Would you say {city} is {neg}{e}'s capital?", "Is {city} {neg}the capital city of {e}?",
        "Can you confirm that {city} is {neg}the capital of {e}?", "Is {e}'s capital {neg}{city}?",
        "True or false: {city} is {neg}the capital of {e}.", "{city} is {neg}the capital of {e}, right?")},
    "change": {"entity": "country", "attr_group": "change", "templates": (
        "Did the {ind} of {e} {dir} from {y1} to {y2}?", "Between {y1} and {y2}, did {e}'s {ind} {dir}?",
        "Was there {dirn} in the {ind} of {e} from {y1} to {y2}?", "Did {e} see its {ind} {dir} between {y1} and {y2}?",
        "From {y1} to {y2}, did the {ind} of {e} {dir}?", "Has {e}'s {ind} {dir_past} from {y1} to {y2}?",
        "Did {e} record {dirn} in {ind} between {y1} and {y2}?", "{ind} of {e}: did it {dir} from {y1} to {y2}?")},
    "born_year": {"entity": "person", "attr_group": "person", "templates": (
        "When was {e} born?", "In what year was {e} born?", "What is the birth year of {e}?",
        "What year was {e} born in?", "{e} was born in which year?", "Tell me the year {e} was born.",
        "In which year did {e} come into the world?", "birth year of {e}?")},
    "born_place": {"entity": "person", "attr_group": "person", "templates": (
        "Where was {e} born?", "In what city was {e} born?", "What is the birthplace of {e}?",
        "Which city was {e} born in?", "{e} was born in which city?", "Tell me where {e} was born.",
        "In which town did {e} come into the world?", "birthplace of {e}?")},
    "job": {"entity": "person", "attr_group": "person", "templates": (
        "What does {e} do for a living?", "What is the profession of {e}?", "What is {e}'s job?",
        "What kind of work does {e} do?", "{e} works as what?", "Tell me the occupation of {e}.",
        "In which profession does {e} work?", "job of {e}?")},
}
# families that share an entity type and answer with a different attribute (attribute swap)
ATTR_SWAP = {"capital": ("currency", "language"), "currency": ("capital", "language"),
             "language": ("capital", "currency"), "born_year": ("born_place", "job"),
             "born_place": ("born_year", "job"), "job": ("born_year", "born_place")}
SUPPORTS = {"entity_swap": tuple(FAMILIES), "attribute_swap": tuple(ATTR_SWAP),
            "year_change": ("population", "change"), "negation": ("is_capital",), "reversed_direction": ("change",)}
DIRS = {"up": ("rise", "risen", "an increase"), "down": ("fall", "fallen", "a decrease")}


def templates(family: str, split: Split) -> tuple[str, ...]:
    t = FAMILIES[family]["templates"]
    half = len(t) // 2
    return t[:half] if split == "train" else t[half:]


def entities(kb: KnowledgeBase, family: str, split: Split, part: int | None = None) -> list[str]:
    """Train / test entities are disjoint: a fixed hash of the name decides (about 60% train). ``part``
    (0 or 1) halves the test entities further (calibration vs evaluation streams)."""
    memo = kb.__dict__.setdefault("_split_memo", {})
    k = (FAMILIES[family]["entity"], split, part)
    if k not in memo:
        out = [e for e in kb.entities(family) if (_h("split", e) % 10 < 6) == (split == "train")]
        if part is not None:
            out = [e for e in out if _h("part", e) % 2 == part]
        memo[k] = out
    return memo[k]


def render(kb: KnowledgeBase, key: Key, template: str) -> str:
    fam, ent, *slots = key
    f: dict[str, object] = {"e": ent}
    if fam == "population":
        f["year"] = slots[0]
    elif fam == "is_capital":
        f["city"], f["neg"] = slots[0], "" if slots[1] == "pos" else "not "
    elif fam == "change":
        ind, y1, y2, d = slots
        f.update(ind=ind, y1=y1, y2=y2, dir=DIRS[d][0], dir_past=DIRS[d][1], dirn=DIRS[d][2])
    return template.format(**f)


def random_key(kb: KnowledgeBase, rng: random.Random, family: str, ents: list[str]) -> Key:
    e = rng.choice(ents)
    if family == "population":
        return (family, e, rng.choice(YEARS))
    if family == "is_capital":
        city = kb.countries[e][0] if rng.random() < 0.5 else kb.countries[rng.choice(list(kb.countries))][0]
        return (family, e, city, rng.choice(("pos", "neg")))
    if family == "change":
        y1 = rng.choice(YEARS[:-5])
        return (family, e, rng.choice(INDICATORS), y1, y1 + rng.randint(1, 8), rng.choice(("up", "down")))
    return (family, e)


def perturb(kb: KnowledgeBase, rng: random.Random, key: Key, kind: str, ents: list[str]) -> Key | None:
    """A different key one edit away (the hard negative of ``kind``), or None if the family has none."""
    fam, ent, *slots = key
    if kind == "entity_swap":
        others = [e for e in ents if e != ent]
        return (fam, rng.choice(others), *slots) if others else None
    if kind == "attribute_swap":
        return (rng.choice(ATTR_SWAP[fam]), ent) if fam in ATTR_SWAP else None
    if kind == "year_change":
        if fam == "population":
            return (fam, ent, slots[0] + rng.choice((-10, -5, -2, -1, 1, 2, 5, 10)))
        if fam == "change":
            ind, y1, y2, d = slots
            return (fam, ent, ind, y1, y2 + rng.choice((1, 2, 3)), d) if rng.random() < 0.5 else \
                (fam, ent, ind, y1 - rng.choice((1, 2, 3)), y2, d)
        return None
    if kind == "negation":
        if fam == "is_capital":
            return (fam, ent, slots[0], "neg" if slots[1] == "pos" else "pos")
        return None
    if kind == "reversed_direction":
        if fam == "change":
            ind, y1, y2, d = slots
            if rng.random() < 0.5:
                return (fam, ent, ind, y1, y2, "down" if d == "up" else "up")
            return (fam, ent, ind, y2, y1, d)  # the same words, the years swapped: the opposite change
        return None
    raise ValueError(f"unknown pair kind {kind!r}; choose one of {', '.join(PAIR_KINDS)}")


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: int  # 1: the answer of b serves a
    kind: str
    key_a: Key
    key_b: Key


def make_pairs(kb: KnowledgeBase, split: Split, n: int, seed: int = 0, pos_frac: float = 0.4,
               same_template_frac: float = 0.5) -> list[Pair]:
    """``n`` labelled pairs from ``split`` (its entities and templates only). ``pos_frac`` are paraphrases;
    the rest are hard negatives spread over the kinds each family supports. A negative is rendered with the
    same template as its partner with probability ``same_template_frac`` (the hardest case: one edit apart)."""
    rng = random.Random(_h("pairs", split, seed))
    fams = list(FAMILIES)
    out: list[Pair] = []
    neg_kinds = PAIR_KINDS[1:]
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 100:
            raise RuntimeError("make_pairs: could not draw enough pairs")
        kind = "paraphrase" if rng.random() < pos_frac else rng.choice(neg_kinds)
        fam = rng.choice(fams if kind == "paraphrase" else SUPPORTS[kind])
        ents = entities(kb, fam, split)
        key = random_key(kb, rng, fam, ents)
        tpls = templates(fam, split)
        ta = rng.choice(tpls)
        if kind == "paraphrase":
            tb = rng.choice([t for t in tpls if t != ta])
            out.append(Pair(render(kb, key, ta), render(kb, key, tb), 1, "paraphrase", key, key))
            continue
        other = perturb(kb, rng, key, kind, ents)
        if other is None or other == key or not _valid(kb, other):
            continue
        ofam = other[0]
        otpls = templates(ofam, split)
        if ofam == fam and rng.random() < same_template_frac:
            tb = ta
        elif ofam != fam:
            tb = otpls[tpls.index(ta)] if ta in tpls and tpls.index(ta) < len(otpls) else rng.choice(otpls)
        else:
            tb = rng.choice(otpls)
        a, b = render(kb, key, ta), render(kb, other, tb)
        if a == b:
            continue
        out.append(Pair(a, b, 0, kind, key, other))
    return out


def _valid(kb: KnowledgeBase, key: Key) -> bool:
    fam, ent, *slots = key
    if fam == "population":
        return YEARS[0] - 10 <= slots[0] <= YEARS[-1] + 10
    if fam == "change":
        return slots[1] != slots[2]
    return True


# -- query streams -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    text: str
    key: Key
    kind: str  # fresh | repeat | paraphrase | near_miss


def make_stream(kb: KnowledgeBase, n: int, mix: dict[str, float], seed: int = 0, part: int | None = None,
                split: Split = "test") -> list[Query]:
    """A cache workload: ``mix`` gives the share of each kind of query.

    - ``fresh``: a new random question;
    - ``repeat``: the exact text of an earlier query;
    - ``paraphrase``: an earlier question's key in another template (a correct hit if served from cache);
    - ``near_miss``: one edit away from an earlier key (entity/attribute/year/negation/direction), in the
      same template where the family allows it (a wrong hit if served from cache).
    """
    kinds = ("fresh", "repeat", "paraphrase", "near_miss")
    unknown = set(mix) - set(kinds)
    if unknown:
        raise ValueError(f"stream mix: unknown kind(s) {sorted(unknown)}; use {', '.join(kinds)}")
    rng = random.Random(_h("stream", seed, part, split))
    weights = [float(mix.get(k, 0.0)) for k in kinds]
    out: list[Query] = []
    while len(out) < n:
        kind = "fresh" if not out else rng.choices(kinds, weights)[0]
        if kind == "fresh":
            fam = rng.choice(list(FAMILIES))
            key = random_key(kb, rng, fam, entities(kb, fam, split, part))
            out.append(Query(render(kb, key, rng.choice(templates(fam, split))), key, kind))
        elif kind == "repeat":
            q = rng.choice(out)
            out.append(Query(q.text, q.key, kind))
        elif kind == "paraphrase":
            q = rng.choice(out)
            tpls = [t for t in templates(q.key[0], split) if render(kb, q.key, t) != q.text]
            out.append(Query(render(kb, q.key, rng.choice(tpls)), q.key, kind))
        else:
            q = rng.choice(out)
            ents = entities(kb, q.key[0], split, part)
            other = perturb(kb, rng, q.key, rng.choice([k for k in PAIR_KINDS[1:] if q.key[0] in SUPPORTS[k]]), ents)
            if other is None or other == q.key or not _valid(kb, other):
                continue
            tpls = templates(other[0], split)
            same = [t for t in tpls if render(kb, q.key, t) == q.text]
            t = same[0] if same and rng.random() < 0.5 else rng.choice(tpls)
            out.append(Query(render(kb, other, t), other, kind))
    return out
