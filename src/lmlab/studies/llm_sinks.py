"""Extreme-token phenomena in a pretrained LLM (Guo et al. 2024, arXiv 2410.13835, LLM part).

The paper's Bigram-Backcopy study explains attention sinks, value-state drains and residual-state
peaks with active-dormant heads; its LLM part finds the same in Llama-2 and OLMo: most heads park
their attention on the first token, whose value state is small and whose residual norm is huge,
and some heads switch from dormant to active with the input domain (Llama-2-7B L16H25 is active on
GitHub code and dormant on Wikipedia).

This study applies the very metric functions of the Bigram-Backcopy study
(``lmlab.analysis.extreme_tokens``: ``sink_share``, ``norm_ratio``, ``classify_heads``,
``switching_heads``) to attention patterns, value states and residual states recorded by hooks on
a pretrained model's modules (``HFLM.record``), on four input domains generated offline:

==========  ===================================================================================
prose       windows of plain English paragraphs (written for this study, in this module)
docs        windows of expository reference prose: the paragraphs of the Python language reference
            shipped with CPython (``pydoc_data.topics``, PSF licence), code blocks and headings removed
code        windows of CPython standard-library modules (STDLIB_CODE)
numbers     comma-separated random integers
repeated    one random common word repeated
==========  ===================================================================================

Every input is cut to exactly ``seq_len`` tokens, so no padding enters the statistics. Position 0
is the sink candidate: SmolLM2's tokenizer adds no BOS, so it is the window's first token.
Per domain: the attention share on position 0 of every (layer, head), the value-norm ratio of
position 0 per (layer, KV head), the residual-norm ratio per layer; then each head is classified
dormant (share >= 0.7), active (<= 0.3) or mixed, and heads dormant on one domain and active on
another are listed.

``prefix`` (e.g. ``"<|endoftext|>"``) puts a fixed first token before every window. Heads are compared
for switches across ``switch_domains`` (prose, docs, code, numbers): repeated tokens remove the first-token
sink in every head, so with them nearly every head would count as switching (that count is reported
too, as ``n_switching_heads_all_domains``). Each domain's windows are measured in two disjoint halves: a
head counts as switching only when it switches in both halves, and the count is compared with the heads
that "switch" between the two halves of one domain (sampling noise). The paper's own comparison, active on
source code and dormant on encyclopaedic prose, is the claim ``code_vs_prose_switch`` (code vs docs).

``random_init`` (the negative control, ``--control``) re-initialises the model's weights before measuring.

The default config uses 64 windows of 256 tokens per domain; ``--quick`` 16 windows of 128 tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmlab.analysis.extreme_tokens import classify_heads, head_outputs, norm_ratio, sink_share, switching_heads
from lmlab.config import Config, ConfigError, LMConfig
from lmlab.studies.base import (Claim, Result, Study, all_of, at_least, at_most, greater, load_study_lm, model_stage, not_comparable,
                                pyplot, save_figure)

PROSE = """\
The river was low that summer, and the children of the village spent their afternoons on the pale stones of its bed,
looking for crayfish under the flat rocks. Their grandparents remembered years when the water reached the bakery door,
and they told those stories as if the flood had been a guest who overstayed his welcome.
In the town library a retired teacher kept a ledger of every book she lent to her neighbours. She did not write down
the dates; she wrote down what each reader said when the book came back. Over forty years the ledger became a quiet
history of the place, full of opinions about wars, recipes, weddings and the weather.
The museum opened a new wing for maps. Visitors lingered over a chart of the coast drawn by a sailor who had never
seen it in daylight; he had sketched the headlands from the sound of the surf and the smell of pine in the dark.
Many of his guesses were wrong, but the harbour he marked is still where he said it would be.
Every spring the orchard on the hill flowers for about ten days. Beekeepers drive up from the valley with their hives
strapped to small trucks, and for a week the road smells of smoke and blossom. When the petals fall, the trucks leave,
and the farmer begins to worry about late frost, hail and the price of apples.
A good kitchen is a place of habits. The knives go back to the same drawer, the bread is cut on the same board, and
the same pot is used for soup on cold evenings. Guests notice none of this, but they feel it, and they stay longer
at the table than they meant to.
The old railway line has been turned into a path for walkers and cyclists. Where the trains once stopped there are
benches, and where the signal box stood there is a small cafe that sells coffee, cake and maps of the hills. On
weekends the path is busy; on weekday mornings it belongs to dog walkers and to the herons that fish in the ditches.
Scientists who study sleep say that the brain does not switch off at night. It sorts the events of the day, keeping
some and discarding others, and it replays short fragments of experience at great speed. Dreams may be a side effect
of that work, a story the sleeping mind tells itself while the filing goes on.
When the storm finally arrived it was smaller than the forecast had promised. A few branches fell, a fence leaned
over, and the power went out for an hour. People came out afterwards to look at the sky, which had turned a clear,
washed green, and several of them said it was the most beautiful evening of the year.
"""

DOMAINS = ("prose", "docs", "code", "numbers", "repeated")
WORDS = ("apple", "river", "the", "house", "blue", "seven", "window", "data", "music", "green")
# The paper's qualitative finding, in its LLM section [recollection; figures in the repository].
PAPER_SWITCH = "Llama-2-7B L16H25: active on GitHub code, dormant on Wikipedia"
PAPER_RESIDUAL_PEAK = "peak of ~100x (Llama-2, [recollection])"
# Claim thresholds (on the first domain, prose by default, over layers >= skip_layers).
SINK_SHARE = 0.5  # a head "sinks" when its attention share on the first token is at least this
MIN_SINK_FRACTION = 0.5  # attention_sink: share of heads that sink
MAX_VALUE_RATIO = 0.5  # value_drain: median ||v_first|| / median ||v_p||
MIN_RESID_RATIO = 5.0  # residual_peak: median ||h_first|| / median ||h_p|| over the middle layers
MIN_SWITCHING_HEADS = 1  # active_dormant_switch, code_vs_prose_switch: replicated switching heads, and more
# of them than the largest number of heads that "switch" between the two halves of one domain (sampling noise)


@dataclass(frozen=True)
class LLMSinksConfig(Config):
    seed: int = 0
    lm: LMConfig = field(default_factory=LMConfig)  # the probed model (--model, --device)
    domains: tuple[str, ...] = DOMAINS
    n_texts: int = 64  # windows per domain
    seq_len: int = 256  # tokens per window
    dormant: float = 0.7  # sink share at or above which a head is dormant on a domain
    active: float = 0.3  # sink share at or below which it is active
    skip_layers: int = 2  # the headline claims read layers >= skip_layers (early layers are known not to sink)
    # Domains compared for active/dormant switches: natural text. Repeated tokens remove the sink in every
    # head (measured), so including them would make nearly every head "switch".
    switch_domains: tuple[str, ...] = ("prose", "docs", "code", "numbers")
    prefix: str = ""  # text put before every window, e.g. "<|endoftext|>" to give the model a BOS-like first token
    random_init: bool = False  # the negative control: re-initialise the model's weights (same architecture)
    progress: bool = True

    def validate(self) -> None:
        unknown = [d for d in self.domains if d not in DOMAINS]
        if unknown or not self.domains:
            raise ConfigError(f"LLMSinksConfig.domains: unknown {unknown}; choose from {', '.join(DOMAINS)}")
        if self.n_texts < 1 or self.seq_len < 8:
            raise ConfigError("LLMSinksConfig: n_texts must be >= 1 and seq_len >= 8")
        if not set(self.switch_domains) <= set(self.domains) or len(self.switch_domains) < 2:
            raise ConfigError(f"LLMSinksConfig.switch_domains {self.switch_domains} must be >= 2 of domains {self.domains}")
        if self.n_texts < 2:
            raise ConfigError("LLMSinksConfig.n_texts must be >= 2: switches are replicated on two halves of the windows")
        if not 0 <= self.active < self.dormant <= 1:
            raise ConfigError(f"LLMSinksConfig: need 0 <= active ({self.active}) < dormant ({self.dormant}) <= 1")


def domain_windows(domain: str, tokenizer: Any, n: int, seq_len: int, rng: np.random.Generator) -> list[list[int]]:
    """``n`` token windows of exactly ``seq_len`` tokens from one domain, drawn with ``rng``."""
    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    if domain in ("prose", "docs", "code"):
        text = PROSE if domain == "prose" else reference_prose() if domain == "docs" else stdlib_source()
        ids = encode(text)
        if len(ids) < seq_len + 1:
            raise ConfigError(f"LLMSinksConfig.seq_len ({seq_len}) is longer than the {domain} corpus ({len(ids)} tokens)")
        starts = rng.integers(0, len(ids) - seq_len, size=n)
        return [ids[s:s + seq_len] for s in starts]
    out = []
    for _ in range(n):
        if domain == "numbers":
            text = ", ".join(str(v) for v in rng.integers(0, 10_000, size=seq_len))
        else:  # repeated
            text = " ".join([str(rng.choice(WORDS))] * (2 * seq_len))
        out.append(encode(text)[:seq_len])
    return out


#: the code domain: modules of the CPython standard library (PSF licence), read from the running Python's
#: installation, so the text changes only with the Python version (recorded in the summary's provenance), not
#: with lmlab's own source
STDLIB_CODE = ("textwrap.py", "shlex.py", "fractions.py", "json/decoder.py", "json/encoder.py")


def stdlib_source() -> str:
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    try:
        return "\n\n".join((root / rel).read_text(encoding="utf-8") for rel in STDLIB_CODE)
    except OSError as e:
        raise ConfigError(f"LLMSinksConfig.domains 'code': the standard library source {e.filename} is missing "
                          "(a Python without its .py files); drop 'code' from domains") from None


def reference_prose() -> str:
    """Expository English prose: the paragraphs of the Python language reference that CPython ships as
    ``pydoc_data.topics`` (PSF licence), unwrapped; indented blocks (grammar, code examples), headings and
    ``>>>`` sessions removed. Offline in every CPython, versioned with it (recorded in the provenance)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise ConfigError("LLMSinksConfig.domains 'docs': this Python has no pydoc_data (the language reference "
                          "text); drop 'docs' from domains and switch_domains") from None
    paras = []
    for name in sorted(topics):
        for block in topics[name].split("\n\n"):
            lines = [ln for ln in block.splitlines() if ln.strip()]
            if (not lines or any(ln.startswith((" ", "\t")) for ln in lines) or ">>>" in block
                    or all(set(ln.strip()) <= set("*=-~^") for ln in lines[1:2])):  # heading underlines
                continue
            text = " ".join(ln.strip() for ln in lines)
            if len(text) >= 200 and text.count(" ") > 25:  # whole paragraphs, not labels or list items
                paras.append(text)
    return "\n\n".join(paras)


def measure(lm: Any, windows: list[list[int]], batch_size: int) -> dict[str, torch.Tensor]:
    """Per (layer, head) sink share and ``||W_O v||`` ratio; per (layer, KV head) value-norm ratio; per layer
    residual-norm ratio. All ratios are first token / median other token (``norm_ratio``)."""
    shares, values, outs, resid, n = [], [], [], [], 0
    w_o = lm.output_projections()  # per layer (head * d_head, d_model), the layout head_outputs takes
    for i in range(0, len(windows), batch_size):
        batch = windows[i:i + batch_size]
        with lm.record(attn=True, values=True, resid=True) as rec:
            lm.forward_ids(batch, last_only=True)
        L = len(rec.attn)
        w = len(batch)
        shares.append(w * torch.stack([sink_share(rec.attn[l]) for l in range(L)]))
        values.append(w * torch.stack([torch.stack([norm_ratio(rec.values[l][:, :, h]) for h in range(rec.values[l].shape[2])])
                                       for l in range(L)]))
        resid.append(w * torch.stack([norm_ratio(rec.resid[l]) for l in range(L)]))
        per_layer = []
        for l in range(L):
            H = rec.attn[l].shape[1]
            v = rec.values[l].repeat_interleave(H // rec.values[l].shape[2], dim=2)  # KV head -> its query heads
            o = head_outputs(v, w_o[l])  # (batch, pos, head, d_model): what each head writes if it attends there
            per_layer.append(torch.stack([norm_ratio(o[:, :, h]) for h in range(H)]))
        outs.append(w * torch.stack(per_layer))
        n += w
    return {"sink_share": sum(shares) / n, "value_ratio": sum(values) / n, "value_out_ratio": sum(outs) / n,
            "resid_ratio": sum(resid) / n}


def _switch_set(a: torch.Tensor, b: torch.Tensor, dormant: float, active: float) -> set[tuple[int, int]]:
    """(layer, head) pairs dormant (share >= dormant) on ``a`` and active (<= active) on ``b``."""
    return {(int(l), int(h)) for l, h in torch.nonzero((a >= dormant) & (b <= active)).tolist()}


def switch_counts(halves: dict[str, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]],
                  cfg: LLMSinksConfig) -> dict[str, Any]:
    """Switching heads that replicate on both halves of the windows, and the within-domain null: heads that
    "switch" between the two halves of one domain, which only sampling noise can make."""
    sh = {d: (h[0]["sink_share"], h[1]["sink_share"]) for d, h in halves.items()}
    doms = [d for d in cfg.switch_domains if d in sh]

    def replicated(a: str, b: str) -> set[tuple[int, int]]:  # dormant on a, active on b, in both halves
        return (_switch_set(sh[a][0], sh[b][0], cfg.dormant, cfg.active)
                & _switch_set(sh[a][1], sh[b][1], cfg.dormant, cfg.active))

    cross: set[tuple[int, int]] = set()
    for a in doms:
        for b in doms:
            if a != b:
                cross |= replicated(a, b)
    null = {d: len(_switch_set(sh[d][0], sh[d][1], cfg.dormant, cfg.active)
                   | _switch_set(sh[d][1], sh[d][0], cfg.dormant, cfg.active)) for d in doms}
    fmt = lambda heads: [f"L{l}H{h}" for l, h in sorted(heads)]  # noqa: E731
    out: dict[str, Any] = {"domains": doms, "cross": fmt(cross), "n_cross": len(cross), "null_by_domain": null,
                           "null_max": max(null.values()) if null else 0}
    if "code" in sh and "docs" in sh:
        out["code_active_docs_dormant"] = fmt(replicated("docs", "code"))
        out["docs_active_code_dormant"] = fmt(replicated("code", "docs"))
    return out


class LLMSinksStudy(Study):
    name = "llm-sinks"
    title = "Attention sinks, value drains, residual peaks and active-dormant heads in a pretrained LLM"
    paper = "Guo et al., Active-Dormant Attention Heads, arXiv 2410.13835 (LLM section)"
    config_cls = LLMSinksConfig

    def quick_config(self) -> LLMSinksConfig:
        """16 windows of 128 tokens per domain (about two minutes on 2 CPU cores)."""
        return LLMSinksConfig(n_texts=16, seq_len=128)

    tiny = ("n_texts=4", "seq_len=16", "skip_layers=0", "progress=false")

    def control_config(self, cfg: LLMSinksConfig) -> LLMSinksConfig:
        """The same probe on the same architecture with its weights re-initialised (no pretraining)."""
        return cfg.replace(random_init=True)

    needs_lm = True

    def lm_needs(self, cfg: LLMSinksConfig) -> tuple[str, ...]:
        return ("trainable",) if cfg.random_init else ("weights",)

    def execute(self, cfg: LLMSinksConfig, out: Path, quick: bool, resume: bool) -> Result:
        started = time.perf_counter()
        lm = load_study_lm(cfg.lm, needs=self.lm_needs(cfg))
        if cfg.random_init:
            from lmlab.lm.control import randomize_weights

            randomize_weights(lm, cfg.seed)
        load_seconds = round(time.perf_counter() - started, 2)
        rng = np.random.default_rng(cfg.seed)
        results: dict[str, dict[str, torch.Tensor]] = {}
        halves: dict[str, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}
        probe_started = time.perf_counter()
        domains = cfg.domains
        if cfg.progress:
            from tqdm import tqdm

            domains = tqdm(domains, desc="domains", leave=False)
        for d in domains:
            windows = domain_windows(d, lm.tokenizer, cfg.n_texts, cfg.seq_len, rng)
            if cfg.prefix:
                pre = list(lm.tokenizer(cfg.prefix, add_special_tokens=False)["input_ids"])
                windows = [pre + w[: cfg.seq_len - len(pre)] for w in windows]
            # two disjoint halves, measured apart: a switch must replicate on both (see switch_counts)
            h = len(windows) // 2
            halves[d] = (measure(lm, windows[:h], cfg.lm.batch_size), measure(lm, windows[h:], cfg.lm.batch_size))
            n1, n2 = h, len(windows) - h
            results[d] = {k: (n1 * halves[d][0][k] + n2 * halves[d][1][k]) / (n1 + n2) for k in halves[d][0]}
        probe_seconds = round(time.perf_counter() - probe_started, 2)

        shares = {d: r["sink_share"] for d, r in results.items()}
        switches = switching_heads({d: shares[d] for d in cfg.switch_domains}, cfg.dormant, cfg.active)
        replication = switch_counts(halves, cfg)
        switches_all = switching_heads(shares, cfg.dormant, cfg.active)
        labels = {d: classify_heads(s, cfg.dormant, cfg.active) for d, s in shares.items()}
        counts = {d: {k: sum(row.count(k) for row in lab) for k in ("dormant", "mixed", "active")} for d, lab in labels.items()}
        claims = self._claims(results, switches, counts, cfg, replication)
        figures = self._figures(out, results, switches, cfg, getattr(lm, "name", cfg.lm.model))
        r3 = lambda t: np.round(t.double().numpy(), 3).tolist()  # noqa: E731
        metrics = {
            "model": getattr(lm, "name", cfg.lm.model),
            "load": getattr(lm, "load_info", {"seconds": load_seconds}),
            "probe_seconds": probe_seconds,
            "n_layers": int(next(iter(shares.values())).shape[0]),
            "n_heads": int(next(iter(shares.values())).shape[1]),
            "head_counts": counts,
            "switching_heads": switches,
            "n_switching_heads_all_domains": len(switches_all),
            "switch_replication": replication,
            "random_init": cfg.random_init,
            "per_domain": {d: {k: r3(v) for k, v in r.items()} for d, r in results.items()},
        }
        st = model_stage(lm)
        return Result(claims, metrics, figures, "llm-sinks/1", stages={"model": st} if st else {})

    @staticmethod
    def _claims(results: dict[str, dict[str, torch.Tensor]], switches: list[dict], counts: dict[str, dict[str, int]],
                cfg: LLMSinksConfig, rep: dict[str, Any]) -> list[Claim]:
        s = cfg.skip_layers
        dom = "prose" if "prose" in results else next(iter(results))
        r = results[dom]
        L = r["sink_share"].shape[0]
        deep = r["sink_share"][s:]
        frac_sink = float((deep >= SINK_SHARE).float().mean())
        value_med = float(r["value_ratio"][s:].median())
        mid = r["resid_ratio"][s:max(s + 1, L - 1)]
        resid_med = float(mid.median())
        per_domain_frac = {d: round(float((x["sink_share"][s:] >= SINK_SHARE).float().mean()), 3) for d, x in results.items()}
        out = [
            Claim.judged("attention_sink", f"Most attention heads (layers >= {s}) put most of their attention on the first token",
                         paper_value="most heads, Llama-2 / OLMo (qualitative)",
                         measured={f"fraction_of_heads_share_ge_{SINK_SHARE:g}_{dom}": round(frac_sink, 3),
                                   "mean_share_by_layer": np.round(r["sink_share"].mean(1).double().numpy(), 3).tolist(),
                                   "fraction_by_domain": per_domain_frac},
                         rule=at_least(frac_sink, MIN_SINK_FRACTION, what=f"on {dom}: fraction of the heads in layers "
                                       f">= {s} with first-token share >= {SINK_SHARE:g}"),
                         source="[abstract]"),
            Claim.judged("value_drain", "The first token's value states are small (a value-state drain)",
                         paper_value="||v_first|| << ||v_other|| (qualitative)",
                         measured={f"median_value_norm_ratio_layers_ge_{s}": round(value_med, 3),
                                   f"median_W_O_v_norm_ratio_layers_ge_{s}": round(float(r["value_out_ratio"][s:].median()), 3),
                                   "by_layer": np.round(r["value_ratio"].mean(1).double().numpy(), 3).tolist()},
                         rule=at_most(value_med, MAX_VALUE_RATIO, what=f"on {dom}: median over layers >= {s} and KV "
                                      "heads of ||v_first|| / median ||v_p||"),
                         source="[abstract]"),
            Claim.judged("residual_peak", "The first token's residual state has a far larger norm than the others' "
                         "(a residual-state peak) in the middle layers",
                         paper_value=PAPER_RESIDUAL_PEAK,
                         measured={f"median_resid_norm_ratio_layers_{s}_to_{L - 2}": round(resid_med, 2),
                                   "by_layer": np.round(r["resid_ratio"].double().numpy(), 2).tolist()},
                         rule=at_least(resid_med, MIN_RESID_RATIO, what=f"on {dom}: median over layers {s}..{L - 2} "
                                       "of ||h_first|| / median ||h_p||"),
                         source="[abstract] + [recollection]"),
            Claim.judged("active_dormant_switch", "Some heads are dormant (attention parked on the first token) on one "
                         f"input domain and active on another ({', '.join(cfg.switch_domains)})",
                         paper_value=PAPER_SWITCH,
                         measured={"n_switching_heads_replicated": rep["n_cross"], "null_within_domain_max": rep["null_max"],
                                   "null_within_domain": rep["null_by_domain"], "n_switching_heads_pooled": len(switches),
                                   "replicated": rep["cross"][:8], "strongest_pooled": switches[:5], "head_counts": counts},
                         rule=all_of(at_least(rep["n_cross"], MIN_SWITCHING_HEADS,
                                              what=f"heads with share >= {cfg.dormant} on one domain and <= {cfg.active} on "
                                                   "another, in both disjoint halves of the windows"),
                                     greater(rep["n_cross"], rep["null_max"], what="that count",
                                             than="the largest count of heads switching between the two halves of one "
                                                  "domain (sampling noise)")),
                         source="[recollection]; figures in the repository"),
        ]
        if "code" in rep["domains"] and "docs" in rep["domains"]:
            n = len(rep["code_active_docs_dormant"])
            out.append(Claim.judged(
                "code_vs_prose_switch", "As in the paper's example, some heads are active on source code and dormant "
                "on encyclopaedic prose (here: CPython stdlib code vs the Python language reference's prose)",
                paper_value=PAPER_SWITCH,
                measured={"n_heads_code_active_docs_dormant": n, "heads": rep["code_active_docs_dormant"][:8],
                          "n_heads_docs_active_code_dormant": len(rep["docs_active_code_dormant"]),
                          "null_within_domain_max": rep["null_max"]},
                rule=all_of(at_least(n, MIN_SWITCHING_HEADS, what=f"heads with share <= {cfg.active} on code and >= "
                                     f"{cfg.dormant} on docs, in both halves"),
                            greater(n, rep["null_max"], what="that count", than="the within-domain null")),
                source="[recollection]; figures in the repository"))
        else:
            out.append(Claim.judged("code_vs_prose_switch", "Some heads are active on source code and dormant on "
                                    "encyclopaedic prose", paper_value=PAPER_SWITCH, measured=None,
                                    rule=not_comparable("not tested: 'code' and 'docs' are not both in domains")))
        return out

    @staticmethod
    def _figures(out: Path, results: dict[str, dict[str, torch.Tensor]], switches: list[dict], cfg: LLMSinksConfig,
                 model_name: str) -> list[str]:
        plt = pyplot()
        names = list(results)
        n = len(names)
        fig, axes = plt.subplots(1, n + 1, figsize=(2.6 * (n + 1) + 1, 5.2), sharey=True)
        for ax, d in zip(axes, names):
            im = ax.imshow(results[d]["sink_share"].numpy(), aspect="auto", vmin=0, vmax=1, cmap="viridis",
                           origin="lower", interpolation="nearest")
            ax.set_title(d, fontsize=10)
            ax.set_xlabel("head")
        axes[0].set_ylabel("layer")
        stacked = torch.stack([results[d]["sink_share"] for d in cfg.switch_domains])
        span = (stacked.max(0).values - stacked.min(0).values).numpy()
        im2 = axes[-1].imshow(span, aspect="auto", vmin=0, vmax=1, cmap="magma", origin="lower", interpolation="nearest")
        axes[-1].set_title("max - min over\n" + ", ".join(cfg.switch_domains), fontsize=9)
        axes[-1].set_xlabel("head")
        for sw in switches:
            axes[-1].plot(sw["head"], sw["layer"], "o", mfc="none", mec="cyan", ms=9)
        fig.colorbar(im, ax=axes[:-1].tolist(), shrink=0.8, label="attention share on the first token")
        fig.colorbar(im2, ax=axes[-1], shrink=0.8)
        fig.suptitle(f"{model_name}: first-token attention per layer and head (circles: heads that switch "
                     f"dormant >= {cfg.dormant} / active <= {cfg.active})", fontsize=10)
        fig.savefig(Path(out) / "llm-sinks-heads.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        figs = ["llm-sinks-heads.png"]

        fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.2))
        for d in names:
            r = results[d]
            layers = np.arange(r["sink_share"].shape[0])
            a1.plot(layers, r["sink_share"].mean(1).numpy(), "o-", ms=3, label=d)
            line, = a2.plot(layers, r["value_ratio"].mean(1).numpy(), "o-", ms=3, label=f"{d}: v")
            a2.plot(layers, r["value_out_ratio"].mean(1).numpy(), ":", color=line.get_color(), label=f"{d}: W_O v")
            a3.plot(layers, r["resid_ratio"].numpy(), "o-", ms=3, label=d)
        a1.set(title="mean attention share on the first token", xlabel="layer", ylim=(0, 1.02))
        a2.set(title="value norm (v, dotted W_O v): first token / median", xlabel="layer", yscale="log")
        a2.axhline(1, color="gray", lw=0.8, ls="--")
        a3.set(title="residual norm: first token / median token", xlabel="layer", yscale="log")
        a3.axhline(1, color="gray", lw=0.8, ls="--")
        a1.legend(fontsize=8)
        figs.append(save_figure(fig, out, "llm-sinks-norms.png"))

        if switches:
            top = switches[:10]
            fig, ax = plt.subplots(figsize=(1.2 * len(top) + 3, 3.6))
            width = 0.8 / n
            for j, d in enumerate(names):
                vals = [float(results[d]["sink_share"][s["layer"], s["head"]]) for s in top]
                ax.bar(np.arange(len(top)) + j * width - 0.4 + width / 2, vals, width, label=d)
            ax.set_xticks(np.arange(len(top)), [f"L{s['layer']}H{s['head']}" for s in top])
            ax.set_ylabel("share on the first token")
            ax.set_ylim(0, 1.05)
            ax.axhline(cfg.dormant, color="gray", ls="--", lw=0.8)
            ax.axhline(cfg.active, color="gray", ls=":", lw=0.8)
            ax.set_title(f"the {len(top)} strongest of {len(switches)} heads that switch between dormant (>= {cfg.dormant}) "
                         f"and active (<= {cfg.active}) across {', '.join(cfg.switch_domains)}", fontsize=9)
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            figs.append(save_figure(fig, out, "llm-sinks-switching.png"))
        return figs
