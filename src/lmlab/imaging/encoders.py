"""Encoders: differentiable simulated optics, each an ``nn.Module`` mapping objects to clean measurements.

Every encoder conserves light: a PSF is non-negative and sums to 1, a colour-filter array's weights at a pixel
are non-negative and sum to 1 over colour channels, so a design cannot win information by collecting more
photons. Both constraints hold by construction (a softmax over the free parameters), so Adam can move the
parameters anywhere.

>>> import torch
>>> enc = CFAEncoder(n_channels=3, period=2, kind="bayer")
>>> [round(v, 6) for v in enc.weights()[:, 0, 0].tolist()]   # top-left of RGGB is red
[1.0, 0.0, 0.0]
>>> enc(torch.ones(1, 3, 4, 4)).shape
torch.Size([1, 1, 4, 4])
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmlab.config import ConfigError

#: logit given to the zero entries of a one-hot initial design: softmax leaves them below 1e-9
_HARD = 25.0
PSF_KINDS = ("delta", "gaussian", "random", "diffuser", "lensless")
CFA_KINDS = ("bayer", "random", "random_onehot", "mono", "single")


def _logits_from(p: np.ndarray) -> torch.Tensor:
    """Logits whose softmax (over all entries) is ``p``; zeros get -_HARD relative to the largest entry."""
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum()
    lg = np.where(p > 0, np.log(np.maximum(p, 1e-300)), -np.inf)
    lg = np.maximum(lg, lg.max() - _HARD)
    return torch.tensor(lg, dtype=torch.float32)


def initial_psf(kind: str, size: int, rng: np.random.Generator, sigma: float = 1.5, n_points: int = 6) -> np.ndarray:
    """A (size, size) PSF that sums to 1.

    ``delta`` an ideal lens; ``gaussian`` a defocused lens (``sigma`` pixels); ``random`` uniform random
    values (the usual random initialisation); ``diffuser`` a smooth random pattern (a weak diffuser);
    ``lensless`` ``n_points`` sharp random spots spread over the whole (large) kernel, like a caustic PSF.
    """
    c = size // 2
    yy, xx = np.mgrid[:size, :size]
    if kind == "delta":
        p = np.zeros((size, size))
        p[c, c] = 1.0
    elif kind == "gaussian":
        p = np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * sigma**2))
    elif kind == "random":
        p = rng.uniform(size=(size, size))
    elif kind == "diffuser":
        from scipy.ndimage import gaussian_filter

        p = np.maximum(gaussian_filter(rng.normal(size=(size, size)), 1.0, mode="wrap"), 0) ** 2 + 1e-3
    elif kind == "lensless":
        p = np.full((size, size), 1e-4)
        idx = rng.choice(size * size, size=n_points, replace=False)
        p.flat[idx] = rng.uniform(0.5, 1.0, size=n_points)
    else:
        raise ConfigError(f"encoder psf kind {kind!r} is not known; choose one of {', '.join(PSF_KINDS)}")
    return p / p.sum()


class PSFEncoder(nn.Module):
    """Convolution with a learnable point-spread function: ``y = x * psf`` ('valid' convolution, so a
    measurement of side P needs an object crop of side P + size - 1; no wrap-around).

    The PSF is ``softmax(logits)`` over all its entries: non-negative and normalised to 1.
    """

    def __init__(self, size: int = 7, kind: str = "random", learnable: bool = True, seed: int = 0,
                 psf: np.ndarray | None = None, **kw: float) -> None:
        super().__init__()
        if size < 1:
            raise ConfigError(f"encoder.psf_size ({size}) must be >= 1")
        p = psf if psf is not None else initial_psf(kind, size, np.random.default_rng(seed), **kw)
        self.size = int(np.shape(p)[0])
        self.kind = kind
        self.logits = nn.Parameter(_logits_from(p), requires_grad=learnable)

    def psf(self) -> torch.Tensor:
        return torch.softmax(self.logits.flatten(), 0).view_as(self.logits)

    @property
    def margin(self) -> int:
        """How many pixels the object crop exceeds the measurement by."""
        return self.size - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv2d is cross-correlation: flip to convolve; one PSF for every input channel
        k = self.psf().flip(0, 1)[None, None]
        n, c, h, w = x.shape
        y = F.conv2d(x.reshape(n * c, 1, h, w), k).reshape(n, c, h - self.size + 1, w - self.size + 1)
        return y.sum(1, keepdim=True) if c > 1 else y


def initial_cfa(kind: str, n_channels: int, period: int, rng: np.random.Generator) -> np.ndarray:
    """(n_channels, period, period) filter weights, summing to 1 over channels at each pixel.

    ``bayer`` RGGB (needs 3 channels and an even period); ``random`` soft random weights (Dirichlet(1), the
    random initialisation of the learned design); ``random_onehot`` one random channel per pixel; ``mono``
    equal weights (a panchromatic sensor: no colour); ``single`` channel 0 everywhere.
    """
    w = np.zeros((n_channels, period, period))
    if kind == "bayer":
        if n_channels != 3 or period % 2:
            raise ConfigError(f"a Bayer CFA needs 3 channels and an even period (got {n_channels}, {period})")
        w[0, 0::2, 0::2] = 1
        w[1, 0::2, 1::2] = 1
        w[1, 1::2, 0::2] = 1
        w[2, 1::2, 1::2] = 1
    elif kind == "random":
        w = rng.dirichlet(np.ones(n_channels), size=(period, period)).transpose(2, 0, 1)
    elif kind == "random_onehot":
        ch = rng.integers(0, n_channels, size=(period, period))
        for c in range(n_channels):
            w[c][ch == c] = 1
    elif kind == "mono":
        w[:] = 1.0 / n_channels
    elif kind == "single":
        w[0] = 1
    else:
        raise ConfigError(f"encoder cfa kind {kind!r} is not known; choose one of {', '.join(CFA_KINDS)}")
    return w


class CFAEncoder(nn.Module):
    """A colour-filter-array mosaic: ``y[p] = sum_c w[c, p mod period] x[c, p]``, one grey measurement per pixel.

    ``w = softmax(logits)`` over channels: each pixel's filter transmits a non-negative mix summing to 1.
    """

    def __init__(self, n_channels: int = 3, period: int = 4, kind: str = "random", learnable: bool = True,
                 seed: int = 0, weights: np.ndarray | None = None) -> None:
        super().__init__()
        if period < 1:
            raise ConfigError(f"encoder.period ({period}) must be >= 1")
        w = weights if weights is not None else initial_cfa(kind, n_channels, period, np.random.default_rng(seed))
        w = np.asarray(w, dtype=np.float64)
        self.n_channels, self.period, self.kind = w.shape[0], w.shape[1], kind
        lg = np.log(np.maximum(w, 1e-300))
        lg = np.maximum(lg, lg.max(axis=0, keepdims=True) - _HARD)
        self.logits = nn.Parameter(torch.tensor(lg, dtype=torch.float32), requires_grad=learnable)

    @property
    def margin(self) -> int:
        return 0

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if c != self.n_channels:
            raise ConfigError(f"CFA has {self.n_channels} channels but the objects have {c}; load colour objects")
        reps = (math.ceil(h / self.period), math.ceil(w / self.period))
        mask = self.weights().repeat(1, *reps)[:, :h, :w]
        return (x * mask).sum(1, keepdim=True)


def make_encoder(spec: str, seed: int = 0, learnable: bool = False, psf_size: int = 7, period: int = 4,
                 n_channels: int = 3) -> nn.Module:
    """An encoder from a short name: ``psf:<kind>[:size]`` or ``cfa:<kind>``, e.g. ``psf:lensless:15``."""
    parts = spec.split(":")
    if parts[0] == "psf" and len(parts) in (2, 3):
        size = int(parts[2]) if len(parts) == 3 else psf_size
        return PSFEncoder(size=size, kind=parts[1], learnable=learnable, seed=seed)
    if parts[0] == "cfa" and len(parts) == 2:
        return CFAEncoder(n_channels=n_channels, period=period, kind=parts[1], learnable=learnable, seed=seed)
    raise ConfigError(f"encoder spec {spec!r} is not understood; write psf:<kind>[:size] or cfa:<kind>")
