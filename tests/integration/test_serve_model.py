"""The gateway's defaults with the real model wheels (SmolLM2-135M-Instruct, all-MiniLM-L6-v2): `make test-model`.
The guard is switched off here (its first build takes minutes; `tests/unit/test_serve_units.py` builds one on a tiny
model)."""

import openai
import pytest

from lmlab.serve import GatewayConfig, create_app
from lmlab.serve.testing import serve_in_thread

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_default_gateway_with_real_models(tmp_path, one_thread):
    cfg = GatewayConfig.load(None, [f"server.state_dir={tmp_path}", "guard.enabled=false"])
    with serve_in_thread(create_app(cfg), startup_timeout_s=600) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
        msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
        r = c.chat.completions.with_raw_response.create(model="smollm2", messages=msgs, temperature=0, max_tokens=8)
        assert "paris" in r.parse().choices[0].message.content.lower()
        assert r.headers["x-lmlab-cache"] == "stored"
        again = c.chat.completions.with_raw_response.create(model="smollm2", messages=msgs, temperature=0, max_tokens=8)
        assert again.headers["x-lmlab-cache"] == "hit"
        e = c.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat", "a kitten", "tax law"])
        import numpy as np

        v = np.array([d.embedding for d in e.data])
        assert v.shape == (3, 384) and v[0] @ v[1] > v[0] @ v[2]
