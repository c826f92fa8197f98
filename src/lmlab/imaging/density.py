"""Density models that upper-bound H(Y), the MI estimate I = H(Y) - H(Y|X), and bootstrap intervals.

A model is fitted on training measurements and scored on held-out ones: its test negative log-likelihood per
pixel, Ĥ(Y) = -(1/N) sum_i (1/D) log p(y_i), is a cross-entropy and so an upper bound on H(Y); with several
models take the lowest. All NLLs are in nats per pixel; :func:`estimate_mi` reports bits per pixel.

Integer (photon-count) measurements are dequantised with uniform noise U(0, 1) before fitting and scoring, as
the reference package does, so a continuous density is compared with a continuous density.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> y = torch.randn(4000, 2, 2, generator=g, dtype=torch.float64) * 3
>>> m = FullGaussian(dequantize=False).fit(y[:3000])
>>> abs(m.nll(y[3000:]).mean().item() - gaussian_entropy(9 * torch.eye(4)).item()) < 0.05
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI_E = math.log(2 * math.pi * math.e)
LOG_2PI = math.log(2 * math.pi)


def dequantize(y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``y + U(0, 1)``: spreads integer counts over unit bins so a continuous density can model them."""
    return y + torch.rand(y.shape, generator=generator, dtype=y.dtype)


def _flat(y: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).to(torch.float64)
    return t.reshape(t.shape[0], -1)


def gaussian_entropy(cov: torch.Tensor) -> torch.Tensor:
    """Differential entropy per dimension of N(mu, cov): [D/2 ln(2 pi e) + 1/2 sum ln eig(cov)] / D.
    Differentiable (eigvalsh), used as IDEAL's analytic loss."""
    d = cov.shape[-1]
    ev = torch.linalg.eigvalsh(cov)
    return (0.5 * d * LOG_2PI_E + 0.5 * torch.log(ev.clamp_min(1e-12)).sum(-1)) / d


def floor_eigenvalues(cov: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Raise eigenvalues below ``floor`` to it; if the rebuilt matrix is still not positive definite (rounding),
    raise the floor x10 and retry (the spec's rule)."""
    ev, vec = torch.linalg.eigh(cov)
    while True:
        out = (vec * ev.clamp_min(floor)) @ vec.T
        out = 0.5 * (out + out.T)
        if torch.linalg.eigvalsh(out).min() > 0:
            return out
        floor *= 10


def _mvn_nll(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Per-sample NLL (total over dimensions) of rows of ``x`` under N(mean, cov)."""
    chol = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(chol, (x - mean).T, upper=False)
    logdet = 2 * torch.log(torch.diagonal(chol)).sum()
    return 0.5 * ((z**2).sum(0) + logdet + x.shape[1] * LOG_2PI)


class FullGaussian:
    """A Gaussian with a full covariance matrix (and a mean per pixel), eigenvalues floored at 1e-3."""

    def __init__(self, eigenvalue_floor: float = 1e-3, dequantize: bool = True, seed: int = 0) -> None:
        self.floor, self.dequantize, self.seed = eigenvalue_floor, dequantize, seed
        self.mean: torch.Tensor | None = None
        self.cov: torch.Tensor | None = None

    def _prep(self, y: Any, offset: int) -> torch.Tensor:
        x = _flat(y)
        if self.dequantize:
            x = dequantize(x, torch.Generator().manual_seed(self.seed + offset))
        return x

    def fit(self, y: Any) -> FullGaussian:
        x = self._prep(y, 0)
        self.mean = x.mean(0)
        self.cov = floor_eigenvalues(torch.cov(x.T).reshape(x.shape[1], x.shape[1]), self.floor)
        return self

    def nll(self, y: Any) -> torch.Tensor:
        """Per-sample test NLL in nats per pixel."""
        assert self.cov is not None, "fit first"
        x = self._prep(y, 1)
        return _mvn_nll(x, self.mean, self.cov) / x.shape[1]

    def entropy(self) -> float:
        return float(gaussian_entropy(self.cov))


def doubly_toeplitz(cov: torch.Tensor, side: int) -> torch.Tensor:
    """Average a (side^2, side^2) covariance of row-major patches into a doubly-Toeplitz matrix: the entry for
    pixels (i, a), (j, b) becomes the mean of all entries with the same row offset |i - j| and column offset
    |a - b| (the reference's averaging over block diagonals, then over diagonals within each block).
    Written with bincount so it is one vectorised pass instead of a loop over blocks."""
    r, c = np.divmod(np.arange(side * side), side)
    dr = np.abs(r[:, None] - r[None, :])
    dc = np.abs(c[:, None] - c[None, :])
    key = torch.as_tensor((dr * side + dc).ravel())
    sums = torch.zeros(side * side, dtype=cov.dtype).index_add_(0, key, cov.reshape(-1))
    counts = torch.bincount(key, minlength=side * side).to(cov.dtype)
    return (sums / counts.clamp_min(1))[key].reshape(cov.shape)


class StationaryGaussianProcess(FullGaussian):
    """A stationary Gaussian process on square patches: one scalar mean, a doubly-Toeplitz covariance (the
    plug-in estimate averaged along diagonals, eigenvalues floored at 1e-3 and the floor raised x10 until
    positive definite). ``iterative=True`` then refines the eigenvalues by gradient descent on the training NLL
    with a projection back to doubly-Toeplitz + floor after each step (the reference's
    ``use_iterative_optimization``; same defaults: SGD lr 100, momentum 0.9, gradient clipped at 1, batch 12,
    60 epochs of 1 step, patience 15, 10% validation)."""

    def fit(self, y: Any, iterative: bool = False, learning_rate: float = 1e2, max_epochs: int = 60,
            patience: int = 15, batch_size: int = 12, val_fraction: float = 0.1, gradient_clip: float = 1.0,
            momentum: float = 0.9) -> StationaryGaussianProcess:
        x = self._prep(y, 0)
        d = x.shape[1]
        self.side = side = int(round(math.sqrt(d)))
        if side * side != d:
            raise ValueError(f"a stationary GP needs square patches; got {d} pixels")
        self.mean = torch.full((d,), float(x.mean()), dtype=torch.float64)
        self.cov = floor_eigenvalues(doubly_toeplitz(torch.cov(x.T).reshape(d, d), side), self.floor)
        if iterative:
            self._refine(x, learning_rate, max_epochs, patience, batch_size, val_fraction, gradient_clip, momentum)
        return self

    def _refine(self, x: torch.Tensor, lr: float, max_epochs: int, patience: int, batch_size: int,
                val_fraction: float, clip: float, momentum: float) -> None:
        n_val = int(x.shape[0] * val_fraction)
        val, train = x[:n_val], x[n_val:]
        g = torch.Generator().manual_seed(self.seed)
        ev, vec = torch.linalg.eigh(self.cov)
        best = (float(_mvn_nll(val, self.mean, self.cov).mean()), self.cov)
        best_epoch, velocity = 0, torch.zeros_like(ev)
        for epoch in range(1, max_epochs + 1):
            batch = train[torch.randint(0, train.shape[0], (batch_size,), generator=g)]
            ev_p = ev.clone().requires_grad_(True)
            loss = _mvn_nll(batch, self.mean, (vec * ev_p) @ vec.T).mean() / x.shape[1]
            (grad,) = torch.autograd.grad(loss, ev_p)
            grad = grad.clamp(-clip, clip)  # optax.clip: element-wise
            velocity = momentum * velocity + grad
            ev = ev - lr * velocity
            # proximal step: back to doubly-Toeplitz, eigenvalues floored
            dt = doubly_toeplitz((vec * ev) @ vec.T, self.side)
            ev, vec = torch.linalg.eigh(0.5 * (dt + dt.T))
            ev = ev.clamp_min(self.floor)
            cov = (vec * ev) @ vec.T
            cov = 0.5 * (cov + cov.T)
            try:
                v = float(_mvn_nll(val, self.mean, cov).mean())
            except torch.linalg.LinAlgError:
                break
            if not math.isfinite(v):
                break
            if v <= best[0]:
                best, best_epoch = (v, cov), epoch
            elif epoch - best_epoch >= patience:
                break
        self.cov = floor_eigenvalues(best[1], self.floor)


# -- PixelCNN ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PixelCNNConfig:
    """The reference's defaults: 64 hidden channels, 40 mixture components, Adam lr 1e-2, up to 200 epochs of
    100 steps, patience 10 (the spec), batch 64, sigma_min 1, 10% validation."""

    hidden: int = 64
    n_mix: int = 40
    lr: float = 1e-2
    max_epochs: int = 200
    steps_per_epoch: int = 100
    patience: int = 10
    batch_size: int = 64
    sigma_min: float = 1.0
    val_fraction: float = 0.1
    dilations: tuple[int, ...] = field(default=(1, 2, 1, 4, 1, 2, 1))


class _MaskedConv(nn.Conv2d):
    def __init__(self, c_in: int, c_out: int, mask: np.ndarray, dilation: int = 1) -> None:
        kh, kw = mask.shape
        super().__init__(c_in, c_out, (kh, kw), dilation=dilation,
                         padding=(dilation * (kh // 2), dilation * (kw // 2)))
        self.register_buffer("mask", torch.tensor(mask, dtype=torch.float32)[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding, self.dilation)


def _vmask(mask_center: bool) -> np.ndarray:
    m = np.ones((3, 3), np.float32)
    m[2, :] = 0  # nothing below
    if mask_center:
        m[1, :] = 0
    return m


def _hmask(mask_center: bool) -> np.ndarray:
    m = np.ones((1, 3), np.float32)
    m[0, 2] = 0  # nothing to the right
    if mask_center:
        m[0, 1] = 0
    return m


class _GatedMaskedConv(nn.Module):
    """One gated layer of the two-stack (vertical/horizontal) PixelCNN, as in the reference."""

    def __init__(self, c: int, dilation: int) -> None:
        super().__init__()
        self.vert = _MaskedConv(c, 2 * c, _vmask(False), dilation)
        self.horiz = _MaskedConv(c, 2 * c, _hmask(False), dilation)
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_1x1 = nn.Conv2d(c, c, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vf = self.vert(v)
        v_val, v_gate = vf.chunk(2, 1)
        v_out = torch.tanh(v_val) * torch.sigmoid(v_gate)
        hf = self.horiz(h) + self.v_to_h(vf)
        h_val, h_gate = hf.chunk(2, 1)
        return v_out, self.h_1x1(torch.tanh(h_val) * torch.sigmoid(h_gate)) + h


class _PixelCNNNet(nn.Module):
    def __init__(self, cfg: PixelCNNConfig, stats: tuple[float, float, float, float]) -> None:
        super().__init__()
        self.mean, self.std, self.lo, self.hi = stats
        self.sigma_min = cfg.sigma_min
        c = cfg.hidden
        self.v0 = _MaskedConv(1, c, _vmask(True))
        self.h0 = _MaskedConv(1, c, _hmask(True))
        self.layers = nn.ModuleList(_GatedMaskedConv(c, d) for d in cfg.dilations)
        self.out = nn.Conv2d(c, c, 1)
        self.mu = nn.Conv2d(c, cfg.n_mix, 1)
        self.sigma = nn.Conv2d(c, cfg.n_mix, 1)
        self.logit = nn.Conv2d(c, cfg.n_mix, 1)
        with torch.no_grad():
            # flax's defaults, as in the reference: LeCun-normal kernels (truncated at 2 sd), zero biases; torch's
            # default conv init is 3x smaller in variance and trains more slowly here
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
                    nn.init.trunc_normal_(m.weight, std=math.sqrt(1.0 / fan_in) / 0.87962566103423978, a=-2 * math.sqrt(1.0 / fan_in) / 0.87962566103423978, b=2 * math.sqrt(1.0 / fan_in) / 0.87962566103423978)
                    nn.init.zeros_(m.bias)
            self.mu.bias.uniform_(self.lo, self.hi)  # component means start spread over the data range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel NLL (nats) of ``x`` (N, 1, H, W) under the Gaussian-mixture output."""
        z = (x - self.mean) / (self.std + 1e-5)
        v, h = self.v0(z), self.h0(z)
        for layer in self.layers:
            v, h = layer(v, h)
        o = self.out(F.elu(h))
        mu = self.mu(o).clamp(self.lo, self.hi)
        sigma = F.softplus(self.sigma(o)).clamp(self.sigma_min, max(self.std, self.sigma_min))
        logit = self.logit(o)
        logn = -0.5 * ((x - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * LOG_2PI
        return -torch.logsumexp(torch.log_softmax(logit, 1) + logn, 1)


class PixelCNN:
    """Gated PixelCNN with a Gaussian-mixture output per pixel, trained with uniform dequantisation and early
    stopping on a validation split (best weights kept). ``fit`` then ``nll`` like the Gaussian models."""

    def __init__(self, cfg: PixelCNNConfig | None = None, seed: int = 0, dequantize: bool = True) -> None:
        self.cfg, self.seed, self.dequantize = cfg or PixelCNNConfig(), seed, dequantize
        self.net: _PixelCNNNet | None = None
        self.val_history: list[float] = []

    @staticmethod
    def _img(y: Any) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).to(torch.float32)
        if t.ndim == 3:
            t = t[:, None]
        if t.ndim != 4 or t.shape[1] != 1:
            raise ValueError(f"PixelCNN wants (N, H, W) or (N, 1, H, W) measurements, got {tuple(t.shape)}")
        return t

    def _noise(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return dequantize(x, g) if self.dequantize else x

    def fit(self, y: Any, progress: bool = False) -> PixelCNN:
        cfg = self.cfg
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        x = self._img(y)
        n_val = max(1, int(x.shape[0] * cfg.val_fraction))
        val, train = x[:n_val], x[n_val:]
        ex = self._noise(x[: min(400, x.shape[0])], g)
        stats = (float(ex.mean()), float(ex.std()), float(ex.min()), float(ex.max()))
        self.net = net = _PixelCNNNet(cfg, stats)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        val_noisy = self._noise(val, torch.Generator().manual_seed(self.seed + 1))

        def val_nll() -> float:
            with torch.no_grad():
                return float(torch.cat([net(b).mean((1, 2)) for b in val_noisy.split(256)]).mean())

        best, best_state, best_epoch = val_nll(), None, 0
        self.val_history = [best]
        from tqdm.auto import tqdm

        bar = tqdm(range(1, cfg.max_epochs + 1), desc="pixelcnn", leave=False, disable=not progress)
        for epoch in bar:
            net.train()
            for _ in range(cfg.steps_per_epoch):
                b = self._noise(train[torch.randint(0, train.shape[0], (cfg.batch_size,), generator=g)], g)
                loss = net(b).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            v = val_nll()
            self.val_history.append(v)
            bar.set_postfix(val=f"{v:.3f}")
            if not math.isfinite(v):
                break
            if v <= best:
                best, best_epoch = v, epoch
                best_state = {k: t.clone() for k, t in net.state_dict().items()}
            elif epoch - best_epoch >= cfg.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        return self

    def nll(self, y: Any, differentiable: bool = False) -> torch.Tensor:
        """Per-sample test NLL, nats per pixel. ``differentiable``: gradients flow to ``y`` through the frozen
        network (IDEAL's PixelCNN loss)."""
        assert self.net is not None, "fit first"
        x = y if (differentiable and isinstance(y, torch.Tensor)) else self._img(y)
        if x.ndim == 3:
            x = x[:, None]
        x = x.float()
        if self.dequantize:
            x = dequantize(x, torch.Generator().manual_seed(self.seed + 2))
        if differentiable:
            return self.net(x).mean((1, 2)).double()
        with torch.no_grad():
            return torch.cat([self.net(b).mean((1, 2)) for b in x.split(256)]).double()


# -- estimates -------------------------------------------------------------------------------------------------
def bootstrap_mi(test_nll: torch.Tensor | np.ndarray, h_cond: torch.Tensor | np.ndarray | float,
                 n_boot: int = 100, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of I = (mean test NLL - mean H(Y|X)) / ln 2 in bits per pixel: the per-sample test NLLs and
    per-image conditional entropies are resampled independently, then combined."""
    rng = np.random.default_rng(seed)
    a = np.asarray(test_nll, dtype=float)
    b = np.atleast_1d(np.asarray(h_cond, dtype=float))
    ha = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1)
    hb = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    mi = (ha - hb) / math.log(2)
    q = (1 - level) / 2
    return float(np.quantile(mi, q)), float(np.quantile(mi, 1 - q))


def estimate_mi(train: Any, test: Any, h_cond: torch.Tensor | np.ndarray | float,
                models: Sequence[str] = ("full_gaussian",), pixelcnn: PixelCNNConfig | None = None,
                iterative: bool = False, n_boot: int = 100, seed: int = 0, dequantize: bool = True,
                progress: bool = False) -> dict[str, Any]:
    """Î(X; Y) in bits per pixel from noisy measurements: fit each density model on ``train``, score ``test``,
    keep the lowest test NLL (the tightest upper bound on H(Y)), subtract H(Y|X) (``h_cond``: a number, or
    per-image values for the bootstrap). ``dequantize``: add U(0, 1) first (for integer photon counts; turn it off
    for continuous measurements such as additive Gaussian noise).

    Returns ``{"mi_bits", "ci", "h_y", "h_y_given_x", "model", "nll": {model: test NLL}}``.
    """
    nlls: dict[str, torch.Tensor] = {}
    for name in models:
        if name == "full_gaussian":
            m: Any = FullGaussian(seed=seed, dequantize=dequantize).fit(train)
        elif name in ("stationary_gp", "gaussian"):
            m = StationaryGaussianProcess(seed=seed, dequantize=dequantize).fit(train, iterative=iterative)
        elif name == "pixelcnn":
            m = PixelCNN(pixelcnn, seed=seed, dequantize=dequantize).fit(train, progress=progress)
        else:
            raise ValueError(f"density model {name!r} is not known; choose full_gaussian, stationary_gp or pixelcnn")
        nlls[name] = m.nll(test)
    best = min(nlls, key=lambda k: float(nlls[k].mean()))
    hc = np.atleast_1d(np.asarray(h_cond.detach() if isinstance(h_cond, torch.Tensor) else h_cond, dtype=float))
    h_y = float(nlls[best].mean())
    return {"mi_bits": (h_y - float(hc.mean())) / math.log(2), "ci": bootstrap_mi(nlls[best], hc, n_boot, seed=seed),
            "h_y": h_y, "h_y_given_x": float(hc.mean()), "model": best,
            "nll": {k: float(v.mean()) for k, v in nlls.items()}}
