"""IDEAL (maximise estimated information over encoder parameters) and the end-to-end baseline.

IDEAL step (the spec's loop): simulate clean measurements of a batch of object patches (clamped >= 1e-8), add
noise with the reparameterised Gaussian approximation of Poisson noise, compute Î = Ĥ(Y) - Ĥ(Y|X), take an
Adam step on -Î with NaN gradients zeroed. Ĥ(Y) is either the analytic Gaussian entropy of the batch's
covariance (``loss="gaussian"``) or the NLL under a PixelCNN refitted without gradients every
``refit_every`` steps (``loss="pixelcnn"``; gradients flow through the frozen network into the measurements).

The end-to-end baseline trains the same encoder jointly with a small CNN decoder on the task loss (MSE
reconstruction). Both loops checkpoint (encoder, decoder, optimiser, RNG state, history) and resume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmlab.imaging.density import PixelCNN, PixelCNNConfig, gaussian_entropy
from lmlab.imaging.noise import add_poisson_noise, poisson_conditional_entropy

#: a sampler returns a batch of clean objects (N, C, H, W) in photons, given a torch generator
Sampler = Callable[[int, torch.Generator], torch.Tensor]


@dataclass
class History:
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    seconds: float = 0.0
    #: bytes of tensors autograd saved for the backward pass of one step (activation memory)
    saved_bytes: int = 0
    #: object patches per step (to compare activation memory per patch across batch sizes)
    batch: int = 0
    n_params: int = 0
    #: the step this call started from: 0 (computed now), or where a checkpoint with the same fingerprint left off
    resumed_from: int = 0


def _save(path: Path | None, **state: Any) -> None:
    if path is None:
        return
    from lmlab.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load(path: Path | None, fingerprint: str) -> dict[str, Any] | None:
    if path is None or not Path(path).exists():
        return None
    from lmlab.train.checkpoint import load_data

    state = load_data(path, allow=(History,))  # weights only: a file in a run directory never runs code
    return state if state.get("fingerprint") == fingerprint else None


def _count_saved(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Run ``fn`` recording the bytes autograd keeps for backward (a deterministic activation-memory measure,
    unlike process RSS on a shared machine)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def information_objective(encoder: nn.Module, objects: torch.Tensor, g: torch.Generator,
                          pixelcnn: PixelCNN | None = None) -> torch.Tensor:
    """Î(X; Y) in nats per pixel for one batch (differentiable in the encoder's parameters)."""
    clean = encoder(objects).clamp_min(1e-8)
    noisy = add_poisson_noise(clean, g, differentiable=True)
    flat = noisy.reshape(noisy.shape[0], -1).double()
    if pixelcnn is None:
        h_y = gaussian_entropy(torch.cov(flat.T) + 1e-3 * torch.eye(flat.shape[1], dtype=flat.dtype))
    else:
        h_y = pixelcnn.nll(noisy, differentiable=True).mean()
    return h_y - poisson_conditional_entropy(clean.double())


def ideal_optimize(encoder: nn.Module, sampler: Sampler, steps: int, lr: float, batch: int = 1024,
                   loss: str = "gaussian", refit_every: int = 50, pixelcnn: PixelCNNConfig | None = None,
                   seed: int = 0, checkpoint: str | Path | None = None, fingerprint: str = "",
                   log_every: int = 10, progress: bool = True) -> History:
    """Maximise Î over ``encoder``'s parameters with Adam. Resumes from ``checkpoint`` when its fingerprint
    matches. Returns the Î history (bits per pixel), wall time and activation memory per step."""
    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999)) if params else None
    g = torch.Generator().manual_seed(seed)
    hist, start = History(n_params=sum(p.numel() for p in params), batch=batch), 0
    state = _load(Path(checkpoint) if checkpoint else None, fingerprint)
    if state is not None:
        encoder.load_state_dict(state["encoder"])
        if opt is not None and state["opt"] is not None:
            opt.load_state_dict(state["opt"])
        g.set_state(state["rng"])
        hist, start = state["history"], state["step"]
        hist.resumed_from = start
    model: PixelCNN | None = None
    from tqdm.auto import tqdm

    bar = tqdm(range(start, steps), desc=f"IDEAL ({loss})", leave=False, disable=not progress)
    t0 = time.perf_counter()
    for step in bar:
        objects = sampler(batch, g)
        if loss == "pixelcnn" and (model is None or step % refit_every == 0):
            with torch.no_grad():
                y = add_poisson_noise(encoder(objects).clamp_min(1e-8), g)
            model = PixelCNN(pixelcnn, seed=seed + step, dequantize=False).fit(y)
        mi, saved = _count_saved(lambda: information_objective(encoder, objects, g, model))
        hist.saved_bytes = max(hist.saved_bytes, saved)
        if opt is not None:
            opt.zero_grad()
            (-mi).backward()
            for p in params:  # a NaN update is zeroed (the spec's rule)
                if p.grad is not None:
                    p.grad.nan_to_num_(0.0, 0.0, 0.0)
            opt.step()
        if step % log_every == 0 or step == steps - 1:
            hist.steps.append(step)
            hist.values.append(float(mi.detach()) / math.log(2))
            bar.set_postfix(mi_bits=f"{hist.values[-1]:.3f}")
            hist.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            _save(Path(checkpoint) if checkpoint else None, fingerprint=fingerprint, encoder=encoder.state_dict(),
                  opt=opt.state_dict() if opt else None, rng=g.get_state(), history=hist, step=step + 1)
    hist.seconds += time.perf_counter() - t0
    return hist


class Decoder(nn.Module):
    """A small CNN from a (1, H, W) measurement to a (C, H', W') object estimate (H' = H + margin: a PSF's
    'valid' convolution shrinks the image, so the decoder pads it back)."""

    def __init__(self, out_channels: int = 3, hidden: int = 16, layers: int = 3, margin: int = 0) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(1, hidden, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 2):
            mods += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU()]
        mods.append(nn.Conv2d(hidden, out_channels, 3, padding=1))
        self.net = nn.Sequential(*mods)
        self.margin = margin

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.margin:
            m = self.margin
            y = nn.functional.pad(y, (m // 2, m - m // 2, m // 2, m - m // 2), mode="replicate")
        return self.net(y)


def _normalise(noisy: torch.Tensor, scale: float) -> torch.Tensor:
    return noisy / scale - 0.5


def train_decoder(encoder: nn.Module, decoder: Decoder, sampler: Sampler, scale: float, steps: int, lr: float,
                  batch: int = 64, seed: int = 0, train_encoder: bool = False, encoder_lr: float | None = None,
                  shuffle_targets: bool = False,
                  checkpoint: str | Path | None = None, fingerprint: str = "", progress: bool = True,
                  log_every: int = 50) -> History:
    """Train ``decoder`` (and the encoder too when ``train_encoder``: the end-to-end baseline) to reconstruct
    objects (``objects / scale``, intensities in [0, 1]) from noisy measurements, MSE loss, Adam with a
    cosine learning-rate decay. ``shuffle_targets`` pairs each
    measurement with another object's target (the negative control). ``encoder_lr``: the encoder's own
    learning rate (default ``lr``)."""
    enc_params = [p for p in encoder.parameters() if p.requires_grad] if train_encoder else []
    params = list(decoder.parameters()) + enc_params
    groups: list[dict[str, Any]] = [{"params": list(decoder.parameters())}]
    if enc_params:
        groups.append({"params": enc_params, "lr": lr if encoder_lr is None else encoder_lr})
    opt = torch.optim.Adam(groups, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    hist, start = History(n_params=sum(p.numel() for p in params), batch=batch), 0
    state = _load(Path(checkpoint) if checkpoint else None, fingerprint)
    if state is not None:
        encoder.load_state_dict(state["encoder"])
        decoder.load_state_dict(state["decoder"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        g.set_state(state["rng"])
        hist, start = state["history"], state["step"]
        hist.resumed_from = start
    from tqdm.auto import tqdm

    bar = tqdm(range(start, steps), desc="end-to-end" if train_encoder else "decoder", leave=False,
               disable=not progress)
    t0 = time.perf_counter()
    for step in bar:
        objects = sampler(batch, g)
        target = objects / scale
        if shuffle_targets:
            target = target[torch.randperm(batch, generator=g)]

        def fwd() -> torch.Tensor:
            with torch.set_grad_enabled(True):
                clean = encoder(objects) if train_encoder else encoder(objects).detach()
                noisy = add_poisson_noise(clean.clamp_min(1e-8), g, differentiable=True)
                return ((decoder(_normalise(noisy, scale)) - target) ** 2).mean()

        loss, saved = _count_saved(fwd)
        hist.saved_bytes = max(hist.saved_bytes, saved)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            hist.steps.append(step)
            hist.values.append(float(loss))
            bar.set_postfix(mse=f"{float(loss):.4f}")
            hist.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            _save(Path(checkpoint) if checkpoint else None, fingerprint=fingerprint, encoder=encoder.state_dict(),
                  decoder=decoder.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(), rng=g.get_state(),
                  history=hist,
                  step=step + 1)
    hist.seconds += time.perf_counter() - t0
    return hist


@torch.no_grad()
def reconstruction_psnr(encoder: nn.Module, decoder: Decoder, objects: torch.Tensor, scale: float,
                        seed: int = 0) -> float:
    """PSNR (dB, peak 1) of the decoder's reconstructions of ``objects`` (in photons) from Poisson measurements."""
    g = torch.Generator().manual_seed(seed)
    noisy = add_poisson_noise(encoder(objects).clamp_min(0), g)
    mse = float(((decoder(_normalise(noisy, scale)) - objects / scale) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))
