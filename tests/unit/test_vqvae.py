"""VQ-VAE: shapes, the straight-through gradient, the losses, codebook usage and dead-code restarts."""

import pytest
import torch

from lmlab.config import ConfigError
from lmlab.nn.vqvae import VQVAE, VQVAEConfig, codebook_usage



def make(**kw):
    torch.manual_seed(0)
    cfg = VQVAEConfig(**{**dict(d_vocab=20, chunk_len=8, compression=4, codebook_size=16, d_model=16, n_heads=2,
                                prompt_len=5), **kw})
    return VQVAE(cfg)


def test_encode_decode_shapes():
    vq = make()
    x = torch.randint(0, 20, (3, 13))
    codes = vq.encode(x[:, 5:])
    assert codes.shape == (3, 2) and codes.dtype == torch.long and int(codes.max()) < 16
    assert vq.decode(codes, x[:, :5]).shape == (3, 8, 20)
    logits, aux = vq(x)
    assert logits.shape == (3, 8, 20) and aux.dim() == 0 and aux.item() >= 0
    # no prompt, one code per chunk (L = r)
    vq1 = make(prompt_len=0, compression=8)
    assert vq1.encode(x[:, :8]).shape == (3, 1) and vq1(x[:, :8])[0].shape == (3, 8, 20)
    with pytest.raises(ValueError, match="tokens must be"):
        vq(x[:, :10])


def test_straight_through_gradient_reaches_the_encoder():
    vq = make()
    x = torch.randint(0, 20, (4, 13))
    logits, _ = vq(x)
    recon = torch.nn.functional.cross_entropy(logits.reshape(-1, 20), x[:, 5:].reshape(-1))
    recon.backward()  # reconstruction only: the encoder gets a gradient only through the straight-through path
    for name in ("tok.weight", "enc_pos", "pre_vq.1.weight", "encoder.0.linear1.weight"):
        g = dict(vq.named_parameters())[name].grad
        assert g is not None and g.abs().sum() > 0, name
    assert vq.enc_pos.grad.abs().sum() > 0 and vq.codebook.weight.grad is None  # codebook: only the VQ loss moves it


def test_quantize_is_identity_backward_and_nearest_forward():
    vq = make()
    z = torch.randn(2, 3, 16, requires_grad=True)
    z_q, codes, aux = vq.quantize(z)
    nearest = torch.cdist(z.detach().reshape(-1, 16), vq.codebook.weight).argmin(1).view(2, 3)
    assert torch.equal(codes, nearest)
    assert torch.allclose(z_q, vq.codebook.weight[codes], atol=1e-6)
    w = torch.randn_like(z)
    (z_q * w).sum().backward()
    assert torch.allclose(z.grad, w)
    expected = (1 + vq.cfg.beta) * ((vq.codebook.weight[codes] - z.detach()) ** 2).mean()
    assert torch.allclose(aux, expected)


def test_usage_tracking_and_dead_code_reset():
    vq = make(reset_dead_every=2)
    vq.train()
    x = torch.randint(0, 20, (8, 13))
    vq(x)
    assert int(vq.code_counts.sum()) == 8 * 2
    before = vq.codebook.weight.detach().clone()
    vq(x)  # second step: dead codes restart on encoder outputs, counts reset
    assert int(vq.code_counts.sum()) == 0
    assert (vq.codebook.weight.detach() != before).any(1).sum() > 0
    u = codebook_usage(torch.tensor([0, 0, 1, 1]), 4)
    assert u["used"] == 2 and u["used_fraction"] == 0.5 and abs(u["perplexity"] - 2) < 1e-6


def test_config_errors():
    with pytest.raises(ConfigError, match="multiple of compression"):
        VQVAEConfig(chunk_len=8, compression=3)


@pytest.mark.slow
def test_codes_carry_the_chunk_not_the_prompt(one_thread):
    """A toy where only the codes can tell the chunks apart: 8 distinct chunks, each paired with random prompts that
    say nothing about it. Reconstruction is exact with the true codes and falls to chance (about 1/8) with the codes
    shuffled across examples; the decoder has no cross-attention, only one pooled prompt vector."""
    torch.manual_seed(0)
    vq = make(prompt_len=5, compression=8, codebook_size=16, reset_dead_every=20)
    assert not any(isinstance(m, torch.nn.TransformerDecoderLayer) for m in vq.modules())
    bank = torch.randint(0, 20, (8, 8))
    opt = torch.optim.Adam(vq.parameters(), lr=3e-3)
    for _ in range(200):
        which = torch.randint(0, 8, (32,))
        x = torch.cat([torch.randint(0, 20, (32, 5)), bank[which]], 1)
        logits, aux = vq(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 20), x[:, 5:].reshape(-1)) + aux
        opt.zero_grad()
        loss.backward()
        opt.step()
    vq.eval()
    which = torch.arange(64) % 8
    x = torch.cat([torch.randint(0, 20, (64, 5)), bank[which]], 1)
    with torch.no_grad():
        codes = vq.encode(x[:, 5:])
        exact = (vq.decode(codes, x[:, :5]).argmax(-1) == x[:, 5:]).all(1).float().mean()
        shuffled = codes[torch.randperm(64, generator=torch.Generator().manual_seed(1))]
        exact_shuffled = (vq.decode(shuffled, x[:, :5]).argmax(-1) == x[:, 5:]).all(1).float().mean()
    assert exact > 0.95 and exact_shuffled < 0.4
