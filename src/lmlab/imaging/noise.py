"""Noise models and the conditional entropy H(Y|X) each implies, in nats per pixel.

| noise | H(Y|X) |
|---|---|
| additive Gaussian, known sigma | 0.5 ln(2 pi e sigma^2) |
| Poisson (Gaussian approximation, variance = mean) | mean over images of (1/D) sum_p 0.5 ln(2 pi e y_p), pixels <= 0 add 0 |
| complex pixels, per-pixel sigma_i | D ln(2 pi e) + 2 sum_i ln sigma_i (total, not per pixel) |

>>> import math
>>> round(gaussian_conditional_entropy(1.0), 4) == round(0.5 * math.log(2 * math.pi * math.e), 4)
True
"""

from __future__ import annotations

import math

import torch


def add_poisson_noise(y: torch.Tensor, generator: torch.Generator | None = None,
                      differentiable: bool = False) -> torch.Tensor:
    """Shot noise on clean measurements ``y`` (in photons). ``differentiable``: the Gaussian approximation
    ``y + sqrt(y) * eps`` (reparameterised, so gradients reach the encoder); otherwise exact Poisson counts."""
    y = y.clamp_min(0)
    if differentiable:
        eps = torch.randn(y.shape, generator=generator, dtype=y.dtype)
        return y + torch.sqrt(y.clamp_min(1e-8)) * eps
    return torch.poisson(y, generator=generator)


def add_gaussian_noise(y: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive white Gaussian noise of standard deviation ``sigma`` (differentiable in ``y``)."""
    return y + sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype)


def gaussian_conditional_entropy(sigma: float) -> float:
    """H(Y|X) per pixel for additive Gaussian noise: 0.5 ln(2 pi e sigma^2)."""
    if sigma <= 0:
        raise ValueError(f"noise sigma must be > 0, got {sigma}")
    return 0.5 * math.log(2 * math.pi * math.e * sigma**2)


def poisson_conditional_entropy_per_image(clean: torch.Tensor) -> torch.Tensor:
    """Per-image H(Y|X) (nats per pixel) under Poisson noise, from clean measurements ``(N, ...)``:
    (1/D) sum_p 0.5 ln(2 pi e y_p), pixels <= 0 contributing 0 (still counted in D). Differentiable."""
    flat = clean.reshape(clean.shape[0], -1)
    h = 0.5 * (math.log(2 * math.pi * math.e) + torch.log(flat.clamp_min(1e-30)))
    return torch.where(flat > 0, h, torch.zeros_like(h)).mean(1)


def poisson_conditional_entropy(clean: torch.Tensor) -> float | torch.Tensor:
    """H(Y|X) per pixel under Poisson noise: the mean of :func:`poisson_conditional_entropy_per_image`.
    Returns a float for tensors without grad, a 0-d tensor otherwise (for IDEAL's loss). With only noisy
    measurements at hand, pass them as a proxy (as the reference package does)."""
    h = poisson_conditional_entropy_per_image(clean).mean()
    return h if h.requires_grad else float(h)


def complex_conditional_entropy(sigmas: torch.Tensor) -> float:
    """Total (not per-pixel) H(Y|X) for complex pixels with per-pixel noise sigma_i: D ln(2 pi e) + 2 sum ln sigma_i."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    return float(s.numel() * math.log(2 * math.pi * math.e) + 2 * torch.log(s).sum())
