import pytest
import torch

from lmlab.config import ConfigError
from lmlab.nn import TinyConfig, TinyTransformer


def tiny(**kw):
    base = dict(d_vocab=11, n_ctx=8, n_layers=2, d_model=16, n_heads=2)
    base.update(kw)
    torch.manual_seed(0)
    return TinyTransformer(TinyConfig(**base))


@pytest.mark.parametrize("pos_embed", ["learned", "rotary", "none"])
@pytest.mark.parametrize("layer_norm", [True, False])
def test_fused_attention_equals_explicit(pos_embed, layer_norm):
    m = tiny(pos_embed=pos_embed, layer_norm=layer_norm)
    x = torch.randint(0, 11, (3, 8))
    fused = m(x)
    with m.record("blocks.*.attn.hook_pattern") as cache:
        explicit = m(x)
    assert len(cache) == 2
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
    # and the fused path's gradients match the explicit path's
    g1 = torch.autograd.grad(m(x).sum(), m.W_E)[0]
    with m.record("blocks.0.attn.hook_attn_scores"):
        g2 = torch.autograd.grad(m(x).sum(), m.W_E)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


def test_pattern_is_causal_and_normalised():
    m = tiny()
    _, cache = m.run_with_cache(torch.randint(0, 11, (2, 8)), names="blocks.0.attn.hook_pattern")
    p = cache["blocks.0.attn.hook_pattern"]
    assert p.shape == (2, 2, 8, 8)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 2, 8))
    assert torch.all(p.triu(1) == 0)


def test_relu_attention_divides_by_visible_keys():
    m = tiny(attn_act="relu", n_layers=1, n_heads=1)
    _, cache = m.run_with_cache(torch.randint(0, 11, (2, 8)), names=["blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern"])
    scores, pattern = cache["blocks.0.attn.hook_attn_scores"], cache["blocks.0.attn.hook_pattern"]
    expected = torch.relu(scores) / torch.arange(1, 9).float()[:, None]
    torch.testing.assert_close(pattern, expected.tril())


def test_hook_names_and_shapes():
    m = tiny()
    names = set(m.hook_names)
    for n in ["hook_embed", "hook_pos_embed", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post",
              "blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v", "blocks.0.attn.hook_z",
              "blocks.0.attn.hook_pattern", "blocks.0.hook_mlp_out", "blocks.0.mlp.hook_post", "hook_resid_final"]:
        assert n in names
    _, cache = m.run_with_cache(torch.zeros(4, 8, dtype=torch.long))
    assert cache["blocks.0.attn.hook_q"].shape == (4, 8, 2, 8)
    assert cache["blocks.1.hook_resid_post"].shape == (4, 8, 16)
    assert cache["blocks.0.mlp.hook_post"].shape == (4, 8, 64)


def test_residual_stream_adds_up():
    m = tiny(n_layers=1)
    _, c = m.run_with_cache(torch.randint(0, 11, (2, 8)))
    torch.testing.assert_close(c["blocks.0.hook_resid_mid"], c["blocks.0.hook_resid_pre"] + c["blocks.0.hook_attn_out"])
    torch.testing.assert_close(c["blocks.0.hook_resid_post"], c["blocks.0.hook_resid_mid"] + c["blocks.0.hook_mlp_out"])


def test_hooks_removed_even_when_code_raises():
    m = tiny()
    with pytest.raises(RuntimeError, match="boom"):
        with m.record("blocks.*.attn.hook_pattern"):
            raise RuntimeError("boom")
    assert not any(hp.active for hp in m.hook_dict.values())
    with pytest.raises(ValueError):
        with m.hooks([("hook_embed", lambda x, h: (_ for _ in ()).throw(ValueError("in hook")))]):
            m(torch.zeros(1, 8, dtype=torch.long))
    assert not any(hp.active for hp in m.hook_dict.values())


def test_intervention_hook_changes_output():
    m = tiny()
    x = torch.randint(0, 11, (2, 8))
    base = m(x)
    with m.hooks([("blocks.*.hook_attn_out", lambda t, h: torch.zeros_like(t))]):
        ablated = m(x)
    assert not torch.allclose(base, ablated)
    torch.testing.assert_close(m(x), base)  # hooks gone afterwards


def test_unknown_hook_name_is_a_clear_error():
    m = tiny()
    with pytest.raises(KeyError, match="no hook point named 'blocks.0.attn.hook_patern'"):
        with m.record("blocks.0.attn.hook_patern"):
            pass


def test_attn_only_has_no_mlp():
    m = tiny(attn_only=True)
    assert not any("mlp" in n for n in m.hook_names)
    assert m(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, 11)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_model=30, n_heads=4), r"d_model \(30\) must be divisible by n_heads \(4\)"),
        (dict(n_layers=0), "n_layers must be >= 1"),
        (dict(attn_act="tanh"), "attn_act"),
        (dict(d_model="big"), "d_model: expects an integer"),
        (dict(pos_embed="rotary", d_model=18, n_heads=2), "even for rotary"),
    ],
)
def test_bad_config_names_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TinyConfig(d_vocab=10, n_ctx=8, **kwargs)


def test_too_long_input_is_rejected():
    with pytest.raises(ValueError, match="exceeds n_ctx=8"):
        tiny()(torch.zeros(1, 9, dtype=torch.long))


def test_model_is_deterministic_under_seed():
    a, b = tiny(), tiny()
    x = torch.randint(0, 11, (2, 8))
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("kw", [dict(), dict(pos_embed="rotary"), dict(attn_act="relu"), dict(bias=True)])
def test_positions_argument_is_exact(kw):
    m = tiny(**kw)
    x = torch.randint(0, 11, (3, 8))
    pos = torch.tensor([2, 7])
    full = m(x)
    part = m(x, positions=pos)
    assert part.shape == (3, 2, 11)
    torch.testing.assert_close(part, full[:, pos], rtol=1e-5, atol=1e-5)
    g1 = torch.autograd.grad(full[:, pos].sum(), m.W_E)[0]
    g2 = torch.autograd.grad(m(x, positions=pos).sum(), m.W_E)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)
    with m.record("blocks.*.attn.hook_pattern") as cache:
        torch.testing.assert_close(m(x, positions=pos), part, rtol=1e-5, atol=1e-5)
    assert cache["blocks.1.attn.hook_pattern"].shape == (3, 2, 2, 8)


def test_ln_bias_follows_bias_unless_set():
    def ln_biases(cfg):
        return [n for n, _ in TinyTransformer(cfg).named_parameters() if n.endswith("ln.bias")]

    assert ln_biases(TinyConfig(bias=False)) == []
    with_ln_bias = ln_biases(TinyConfig(bias=False, ln_bias=True, n_layers=2))
    assert len(with_ln_bias) == 5  # two per block plus the final LN
    lin = [n for n, _ in TinyTransformer(TinyConfig(bias=False, ln_bias=True)).named_parameters() if ".b_" in n]
    assert lin == []  # the linear maps stay bias-free
    assert len(ln_biases(TinyConfig(bias=True, ln_bias=False, n_layers=1))) == 0


@pytest.mark.parametrize("pos_embed", ["learned", "rotary", "none"])
@pytest.mark.parametrize("layer_norm, attn_only, attn_act", [(True, False, "softmax"), (False, True, "relu")])
def test_hook_names_lists_only_hooks_that_fire(pos_embed, layer_norm, attn_only, attn_act):
    m = tiny(pos_embed=pos_embed, layer_norm=layer_norm, attn_only=attn_only, attn_act=attn_act)
    _, cache = m.run_with_cache(torch.randint(0, 11, (2, 8)))
    assert set(cache) == set(m.hook_names)
    assert ("hook_pos_embed" in m.hook_names) == (pos_embed == "learned")


def _greedy_by_hand(m, x, steps):
    for _ in range(steps):
        x = torch.cat([x, m(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return x


@pytest.mark.parametrize("pos_embed", ["learned", "rotary"])
def test_generate_greedy_equals_argmax_of_the_full_forward(pos_embed):
    m = tiny(pos_embed=pos_embed).eval()
    x = torch.randint(0, 11, (3, 2))
    out = m.generate(x)
    assert out.shape == (3, 8) and torch.equal(out[:, :2], x)
    assert torch.equal(out, _greedy_by_hand(m, x, 6))
    assert m.generate(x, max_len=5).shape == (3, 5)


def test_generate_stops_at_eos_and_pads_finished_rows():
    m = tiny().eval()
    x = torch.randint(0, 11, (4, 2))
    full = m.generate(x)
    eos = int(full[0, 2])  # row 0 emits it at once
    out = m.generate(x, eos=eos, pad=10)
    for r in range(4):
        gen, ref = out[r, 2:].tolist(), full[r, 2:].tolist()
        k = ref.index(eos) if eos in ref else len(ref)
        assert gen[:k + 1] == ref[:k + 1]  # the same tokens up to and including EOS,
        assert all(t == 10 for t in gen[k + 1:])  # then padding
    assert out.shape[1] == min(8, 2 + max((full[r, 2:].tolist() + [eos]).index(eos) + 1 for r in range(4)))


def test_generate_sampling():
    m = tiny().eval()
    x = torch.randint(0, 11, (5, 2))
    assert torch.equal(m.generate(x, temperature=1.0, top_k=1), m.generate(x))  # top-1 sampling is greedy
    a = m.generate(x, temperature=2.0, generator=torch.Generator().manual_seed(1))
    b = m.generate(x, temperature=2.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="exceeds n_ctx=8"):
        m.generate(x, max_len=9)
    with pytest.raises(ValueError, match="temperature"):
        m.generate(x, temperature=-1.0)


@pytest.mark.parametrize("kw", [dict(pos_embed="learned"), dict(pos_embed="rotary"), dict(pos_embed="none"),
                                dict(attn_act="relu"), dict(attn_only=True, layer_norm=False)])
def test_kv_cache_logits_equal_the_uncached_forward(kw):
    """A prefill then one token at a time through the KV cache gives the full forward's logits at every position,
    and cached generation (greedy and seeded sampling) equals uncached generation."""
    m = tiny(**kw).eval()
    x = torch.randint(0, 11, (3, 8))
    with torch.no_grad():
        full = m(x)
        cache = m.new_kv_cache(3)
        parts = [m.forward_cached(x[:, :3], cache)] + [m.forward_cached(x[:, t:t + 1], cache) for t in range(3, 8)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    p = x[:, :2]
    assert torch.equal(m.generate(p), m.generate(p, use_cache=False))
    g = [m.generate(p, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(3), use_cache=c)
         for c in (True, False)]
    assert torch.equal(g[0], g[1])
