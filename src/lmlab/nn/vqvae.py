"""A small VQ-VAE that turns chunks of ``L`` text tokens into ``L / r`` discrete codes and back.

Written here rather than taken from a library: the well-kept VQ packages target images or audio
(convolutional encoders, EMA codebooks over feature maps) and none fits a tiny, prompt-conditioned
token-chunk autoencoder; the whole thing is a few dozen lines of PyTorch on top of
``nn.TransformerEncoderLayer``.

Shape of the model (Token Assorted, Su et al. 2025, as in the spec):

- **encoder** f_enc: token + position embeddings of the chunk, ``n_layers`` transformer layers,
  then each group of ``r`` consecutive positions is mean-pooled into one vector (``L / r`` per chunk);
- **quantiser** q: each vector snaps to its nearest codebook entry (squared distance). The
  straight-through estimator passes the decoder's gradient to the encoder unchanged:
  ``z_q = z_e + (e - z_e).detach()``;
- **decoder** f_dec: every position of the chunk reads its group's code, a position embedding and one
  pooled prompt vector g(P) (the prompt's tokens through ``n_layers`` transformer layers, mean-pooled and
  projected; zero without a prompt), then ``n_layers`` self-attention layers over the chunk's positions.
  There is no cross-attention to the prompt's tokens and no chunk index: a search trace is decided by its
  maze, so a decoder that could read the maze token by token (and know where in the trace the chunk lies)
  could rebuild the chunk without the codes. Through one pooled vector it cannot, so the codes must carry
  the chunk;
- **loss** = reconstruction cross-entropy + ||sg(z_e) - e||^2 (codebook) + beta ||z_e - sg(e)||^2
  (commitment). ``forward`` returns ``(logits, codebook + commitment)`` so that the lab's one
  training loop adds the auxiliary term to its cross-entropy.

Codebook usage is tracked in the buffer ``code_counts`` (codes chosen in training since the last
reset). With ``reset_dead_every > 0``, codes unused for that many training steps are moved onto
randomly chosen encoder outputs of the current batch (the usual dead-code restart).

``forward`` takes ``tokens = prompt ⊕ chunk`` of shape ``(batch, prompt_len + chunk_len)``:

>>> cfg = VQVAEConfig(d_vocab=20, chunk_len=8, compression=4, codebook_size=16, d_model=16, n_heads=2, prompt_len=5)
>>> vq = VQVAE(cfg)
>>> x = torch.randint(0, 20, (3, 13))
>>> logits, aux = vq(x)
>>> logits.shape, vq.encode(x[:, 5:]).shape
(torch.Size([3, 8, 20]), torch.Size([3, 2]))
>>> vq.decode(vq.encode(x[:, 5:]), x[:, :5]).shape
torch.Size([3, 8, 20])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmlab.config import Config, ConfigError


@dataclass(frozen=True)
class VQVAEConfig(Config):
    d_vocab: int = 64
    chunk_len: int = 16  # L: text tokens per chunk
    compression: int = 16  # r: text tokens per code, so L / r codes per chunk
    codebook_size: int = 1024
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 1
    prompt_len: int = 0  # tokens of condition before the chunk in forward()'s input (0: unconditioned)
    beta: float = 0.25  # commitment weight
    reset_dead_every: int = 0  # training steps between dead-code restarts (0: never)

    def validate(self) -> None:
        for name in ("d_vocab", "chunk_len", "compression", "codebook_size", "d_model", "n_heads", "n_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"VQVAEConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.chunk_len % self.compression:
            raise ConfigError(
                f"VQVAEConfig.chunk_len ({self.chunk_len}) must be a multiple of compression ({self.compression})")
        if self.d_model % self.n_heads:
            raise ConfigError(f"VQVAEConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.prompt_len < 0 or self.beta < 0 or self.reset_dead_every < 0:
            raise ConfigError("VQVAEConfig.prompt_len, beta and reset_dead_every must be >= 0")

    @property
    def codes_per_chunk(self) -> int:
        return self.chunk_len // self.compression


class VQVAE(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg
        d, L = cfg.d_model, cfg.chunk_len
        self.tok = nn.Embedding(cfg.d_vocab, d)
        self.enc_pos = nn.Parameter(torch.randn(L, d) * 0.02)
        self.dec_pos = nn.Parameter(torch.randn(L, d) * 0.02)
        self.prompt_pos = nn.Parameter(torch.randn(max(cfg.prompt_len, 1), d) * 0.02)

        def enc_layer() -> nn.Module:
            return nn.TransformerEncoderLayer(d, cfg.n_heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)

        self.encoder = nn.ModuleList(enc_layer() for _ in range(cfg.n_layers))
        self.prompt_encoder = nn.ModuleList(enc_layer() for _ in range(cfg.n_layers)) if cfg.prompt_len else None
        self.prompt_proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d)) if cfg.prompt_len else None
        self.decoder = nn.ModuleList(enc_layer() for _ in range(cfg.n_layers))  # self-attention only
        self.pre_vq = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
        self.codebook = nn.Embedding(cfg.codebook_size, d)
        nn.init.uniform_(self.codebook.weight, -1 / cfg.codebook_size, 1 / cfg.codebook_size)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.d_vocab))
        self.register_buffer("code_counts", torch.zeros(cfg.codebook_size, dtype=torch.long))
        self.register_buffer("steps_since_reset", torch.zeros((), dtype=torch.long))

    # -- parts -------------------------------------------------------------------------------
    def encode_continuous(self, chunk: torch.Tensor) -> torch.Tensor:
        """z_e: (batch, L / r, d) from a chunk (batch, L)."""
        self._check(chunk, self.cfg.chunk_len, "chunk")
        h = self.tok(chunk) + self.enc_pos
        for layer in self.encoder:
            h = layer(h)
        B, L, d = h.shape
        h = h.view(B, L // self.cfg.compression, self.cfg.compression, d).mean(2)
        return self.pre_vq(h)

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_q with the straight-through gradient, codes, codebook + beta * commitment loss)."""
        flat = z_e.reshape(-1, z_e.shape[-1])
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.weight.T
                + self.codebook.weight.pow(2).sum(1)[None])
        codes = dist.argmin(1).view(z_e.shape[:-1])
        e = self.codebook(codes)
        aux = F.mse_loss(e, z_e.detach()) + self.cfg.beta * F.mse_loss(z_e, e.detach())
        z_q = z_e + (e - z_e).detach()  # straight-through: forward e, backward identity to z_e
        return z_q, codes, aux

    def prompt_vector(self, prompt: torch.Tensor) -> torch.Tensor:
        """g(P): one vector (batch, d) per prompt, its encoded tokens mean-pooled."""
        self._check(prompt, self.cfg.prompt_len, "prompt")
        m = self.tok(prompt) + self.prompt_pos
        for layer in self.prompt_encoder:
            m = layer(m)
        return self.prompt_proj(m.mean(1))

    def decode_continuous(self, z_q: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        h = z_q.repeat_interleave(self.cfg.compression, dim=1) + self.dec_pos
        if self.prompt_encoder is not None and prompt is not None:
            h = h + self.prompt_vector(prompt)[:, None]
        for layer in self.decoder:
            h = layer(h)
        return self.out(h)

    def encode(self, chunk: torch.Tensor) -> torch.Tensor:
        """Codes (batch, L / r) of a chunk (batch, L)."""
        return self.quantize(self.encode_continuous(chunk))[1]

    def decode(self, codes: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, L, vocab) of the chunk behind ``codes`` (batch, L / r)."""
        return self.decode_continuous(self.codebook(codes), prompt)

    # -- training ----------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens = prompt ⊕ chunk (batch, prompt_len + L) -> (chunk logits (batch, L, vocab), auxiliary loss)."""
        P = self.cfg.prompt_len
        self._check(tokens, P + self.cfg.chunk_len, "tokens")
        prompt, chunk = (tokens[:, :P] if P else None), tokens[:, P:]
        z_e = self.encode_continuous(chunk)
        z_q, codes, aux = self.quantize(z_e)
        if self.training:
            self._track(codes, z_e)
        return self.decode_continuous(z_q, prompt), aux

    @torch.no_grad()
    def _track(self, codes: torch.Tensor, z_e: torch.Tensor) -> None:
        self.code_counts += torch.bincount(codes.flatten(), minlength=self.cfg.codebook_size)
        self.steps_since_reset += 1
        every = self.cfg.reset_dead_every
        if every and int(self.steps_since_reset) >= every:
            dead = (self.code_counts == 0).nonzero().flatten()
            if len(dead):
                flat = z_e.reshape(-1, z_e.shape[-1])
                pick = torch.randint(0, flat.shape[0], (len(dead),), device=flat.device)
                self.codebook.weight.data[dead] = flat[pick] + 1e-3 * torch.randn_like(flat[pick])
            self.code_counts.zero_()
            self.steps_since_reset.zero_()

    @staticmethod
    def _check(x: torch.Tensor, length: int, what: str) -> None:
        if x.dim() != 2 or x.shape[1] != length:
            raise ValueError(f"{what} must be (batch, {length}), got shape {tuple(x.shape)}")


def codebook_usage(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Share of the codebook used by ``codes`` and the perplexity of their distribution (max = codebook size)."""
    counts = torch.bincount(codes.flatten(), minlength=codebook_size).float()
    p = counts / counts.sum().clamp(min=1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"used": int((counts > 0).sum()), "used_fraction": float((counts > 0).float().mean()),
            "perplexity": float(entropy.exp())}
