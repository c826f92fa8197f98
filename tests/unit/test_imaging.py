"""lmlab.imaging: exact checks (H(Y|X), Gaussian MI), trends, encoder constraints, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmlab.config import ConfigError
from lmlab.imaging import (CFAEncoder, FullGaussian, PixelCNN, PixelCNNConfig, PSFEncoder, StationaryGaussianProcess,
                           add_poisson_noise, estimate_mi, gaussian_conditional_entropy, load_objects,
                           poisson_conditional_entropy, poisson_conditional_entropy_per_image, random_patches)
from lmlab.imaging.density import doubly_toeplitz, gaussian_entropy
from lmlab.imaging.optimize import ideal_optimize


def test_gaussian_conditional_entropy_closed_form():
    for sigma in (0.1, 1.0, 7.5):
        assert gaussian_conditional_entropy(sigma) == pytest.approx(0.5 * math.log(2 * math.pi * math.e * sigma**2))
    with pytest.raises(ValueError):
        gaussian_conditional_entropy(0.0)
    # Poisson: 0.5 ln(2 pi e lambda) per pixel; pixels <= 0 add 0 but still count in D
    y = torch.full((3, 4, 4), 50.0)
    assert poisson_conditional_entropy(y) == pytest.approx(0.5 * math.log(2 * math.pi * math.e * 50))
    y[:, :2] = 0
    assert poisson_conditional_entropy(y) == pytest.approx(0.25 * math.log(2 * math.pi * math.e * 50))
    # the analytic Gaussian entropy of sigma^2 I is the same closed form
    assert float(gaussian_entropy(4.0 * torch.eye(5, dtype=torch.float64))) == pytest.approx(
        gaussian_conditional_entropy(2.0))


def test_gaussian_estimator_recovers_gaussian_channel_mi():
    """Gaussian objects, additive Gaussian noise: I = 0.5 log det(I + Sigma_x / sigma^2), within 1%."""
    d, sigma = 16, 1.0
    g = torch.Generator().manual_seed(0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov_x = a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)
    x = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64), cov_x).sample((60000,))
    y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    exact = 0.5 * float(torch.logdet(torch.eye(d, dtype=torch.float64) + cov_x / sigma**2))  # nats, total
    est = estimate_mi(y[:40000].reshape(-1, 4, 4), y[40000:].reshape(-1, 4, 4), gaussian_conditional_entropy(sigma),
                      dequantize=False, n_boot=20)
    assert est["mi_bits"] * math.log(2) * d == pytest.approx(exact, rel=0.01)
    lo, hi = est["ci"]
    assert lo <= est["mi_bits"] <= hi


def _photo_patches(n: int, size: int, seed: int, rows=(0.0, 1.0)) -> torch.Tensor:
    imgs = load_objects("sample_images", color=False, downsample=2)
    return random_patches(imgs, n, size, np.random.default_rng(seed), rows=rows)


def test_mi_increases_with_photon_count():
    x_tr, x_te = _photo_patches(1500, 8, 0, (0, 0.75)), _photo_patches(400, 8, 1, (0.75, 1))
    scale = 1.0 / float(x_tr.mean())
    g = torch.Generator().manual_seed(0)
    mis = []
    for photons in (5.0, 50.0, 500.0):
        tr, te = x_tr * scale * photons, x_te * scale * photons
        est = estimate_mi(add_poisson_noise(tr, g), add_poisson_noise(te, g), poisson_conditional_entropy_per_image(te),
                          n_boot=10)
        mis.append(est["mi_bits"])
    assert mis[0] < mis[1] < mis[2], mis


def test_stationary_gp_is_doubly_toeplitz_and_positive_definite():
    g = torch.Generator().manual_seed(0)
    cov = torch.randn(16, 16, generator=g, dtype=torch.float64)
    dt = doubly_toeplitz(cov @ cov.T, 4)
    # entry depends only on (|row offset|, |col offset|)
    r, c = np.divmod(np.arange(16), 4)
    for i in range(16):
        for j in range(16):
            i2 = (abs(r[i] - r[j])) * 4 + abs(c[i] - c[j])
            assert float(dt[i, j]) == pytest.approx(float(dt[0, i2]))
    y = torch.poisson(torch.full((500, 4, 4), 20.0, dtype=torch.float64), generator=g)
    m = StationaryGaussianProcess().fit(y)
    assert float(torch.linalg.eigvalsh(m.cov).min()) > 0
    assert torch.isfinite(m.nll(y[:50])).all()
    m2 = StationaryGaussianProcess().fit(y, iterative=True, max_epochs=5)
    assert float(m2.nll(y).mean()) == pytest.approx(float(m.nll(y).mean()), rel=0.05)


@pytest.mark.parametrize("kind", ["delta", "gaussian", "random", "diffuser", "lensless"])
def test_psf_encoder_nonnegative_normalised_after_training(kind):
    enc = PSFEncoder(size=5, kind=kind, learnable=True, seed=1)
    opt = torch.optim.Adam(enc.parameters(), lr=0.5)
    x = torch.rand(4, 1, 12, 12) * 100
    for _ in range(5):
        loss = -(enc(x) ** 2).mean() + enc(x)[..., 0, 0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    psf = enc.psf()
    psf = psf.detach()
    assert float(psf.min()) >= 0 and float(psf.sum()) == pytest.approx(1.0, abs=1e-5)
    assert enc(x).shape == (4, 1, 8, 8)
    # light is conserved on a flat object
    assert torch.allclose(enc(torch.full((1, 1, 9, 9), 3.0)), torch.tensor(3.0), atol=1e-4)


@pytest.mark.parametrize("kind", ["bayer", "random", "random_onehot", "mono", "single"])
def test_cfa_encoder_weights_sum_to_one(kind):
    enc = CFAEncoder(3, 4, kind=kind, learnable=True, seed=0)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    enc(x).sum().backward()
    w = enc.weights()
    assert float(w.min()) >= 0
    assert torch.allclose(w.sum(0), torch.ones(4, 4), atol=1e-5)
    assert enc.logits.grad is not None
    with pytest.raises(ConfigError):
        enc(torch.rand(1, 1, 8, 8))


def test_ideal_resume_matches_uninterrupted(tmp_path):
    x = _photo_patches(600, 10, 0) * 100

    def sampler(n, g):
        return x[torch.randint(0, x.shape[0], (n,), generator=g)]

    full = PSFEncoder(3, "random", learnable=True, seed=0)
    h_full = ideal_optimize(full, sampler, steps=12, lr=0.1, batch=128, log_every=4, progress=False)
    part = PSFEncoder(3, "random", learnable=True, seed=0)
    ck = tmp_path / "ck.pt"
    ideal_optimize(part, sampler, steps=8, lr=0.1, batch=128, log_every=4, checkpoint=ck, fingerprint="a",
                   progress=False)
    resumed = PSFEncoder(3, "random", learnable=True, seed=0)
    h_res = ideal_optimize(resumed, sampler, steps=12, lr=0.1, batch=128, log_every=4, checkpoint=ck,
                           fingerprint="a", progress=False)
    assert torch.allclose(full.logits, resumed.logits)
    res = dict(zip(h_res.steps, h_res.values))
    assert [res[s] for s in h_full.steps] == pytest.approx(h_full.values)
    assert h_full.values[-1] > h_full.values[0]  # IDEAL raises the information of a random PSF


def test_objects_offline_and_folder(tmp_path):
    assert load_objects("digits", color=False)[0].shape == (8, 8, 1)
    imgs = load_objects("sample_images", color=True)
    assert len(imgs) == 2 and imgs[0].shape[-1] == 3 and 0 <= imgs[0].min() and imgs[0].max() <= 1
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(tmp_path / "a.png")
    (im,) = load_objects(str(tmp_path), color=False)
    assert im.shape == (20, 30, 1)
    with pytest.raises(ConfigError, match="objects.source"):
        load_objects(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="patch"):
        random_patches([im], 2, 40, np.random.default_rng(0))


@pytest.mark.slow
def test_pixelcnn_nll_at_most_gaussian_on_natural_patches():
    x_tr, x_te = _photo_patches(3000, 8, 0, (0, 0.75)), _photo_patches(500, 8, 1, (0.75, 1))
    scale = 20.0 / float(x_tr.mean())  # low light: at 100 photons this small budget does not yet beat the Gaussian
    g = torch.Generator().manual_seed(0)
    y_tr, y_te = add_poisson_noise(x_tr * scale, g), add_poisson_noise(x_te * scale, g)
    gauss = float(FullGaussian().fit(y_tr).nll(y_te).mean())
    torch.manual_seed(0)
    cfg = PixelCNNConfig(hidden=16, n_mix=10, max_epochs=6, steps_per_epoch=40, patience=3, batch_size=32)
    pcnn = float(PixelCNN(cfg).fit(y_tr).nll(y_te).mean())
    assert pcnn <= gauss, (pcnn, gauss)


@pytest.mark.parametrize("module", ["lmlab.imaging", "lmlab.imaging.encoders", "lmlab.imaging.noise",
                                    "lmlab.imaging.density", "lmlab.imaging.objects"])
def test_doctests(module):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(module))
    assert res.failed == 0 and res.attempted > 0


def test_ideal_checkpoint_with_code_is_refused(tmp_path):
    """Checkpoints are read with weights_only (the History data class allowed by name): a file holding a
    callable is refused with one line and never run."""
    import os

    from lmlab.train.checkpoint import CheckpointError

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    ck = tmp_path / "ck.pt"
    torch.save({"fingerprint": "a", "history": Payload()}, ck)
    enc = PSFEncoder(3, "random", learnable=True, seed=0)
    with pytest.raises(CheckpointError) as e:
        ideal_optimize(enc, lambda n, g: torch.rand(n, 1, 10, 10) * 100, steps=2, lr=0.1, batch=8, checkpoint=ck,
                       fingerprint="a", progress=False)
    assert "\n" not in str(e.value) and "refused without running" in str(e.value)
    assert not (tmp_path / "ran").exists()
