"""GPU paths. Skipped (by conftest's `gpu` marker) where torch sees no CUDA device, as on CI."""

import pytest
import torch

from lmlab.nn import TinyConfig, TinyTransformer


@pytest.mark.gpu
def test_cuda_fused_equals_explicit_and_bf16_runs():
    torch.manual_seed(0)
    m = TinyTransformer(TinyConfig(d_vocab=11, n_ctx=8, n_layers=2, d_model=32, n_heads=2)).cuda()
    x = torch.randint(0, 11, (4, 8), device="cuda")
    fused = m(x)
    with m.record("blocks.*.attn.hook_pattern"):
        explicit = m(x)
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.isfinite(m(x).float()).all()
