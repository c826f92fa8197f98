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


def test_packaged_guard_serves_the_default_model(tmp_path, one_thread):
    """An empty state directory: the default guard comes from the package (no build), and it scores calibration
    prompts as the stored calibration scores say."""
    import json
    from pathlib import Path

    import numpy as np

    from lmlab.lm import load_lm
    from lmlab.moderation.data import load_default, stratified_split
    from lmlab.serve.config import GuardConfig
    from lmlab.serve.guard import default_detector

    lm = load_lm("default", needs=("logits",))
    det, meta = default_detector(GuardConfig(), lm, tmp_path)
    assert meta["source"] == "package" and not (tmp_path / "guard").exists()
    info = json.loads(Path(meta["path"]).with_suffix(".json").read_text())
    data = load_default()
    _, calib = stratified_split(data.labels, info["calib_frac"], info["seed"])
    y = np.array(info["calib_labels"])
    pick = [*np.flatnonzero(y == 1)[:3], *np.flatnonzero(y == 0)[:3]]
    got = det.score([data.texts[calib[i]] for i in pick])
    assert np.allclose(got, [info["calib_scores"][i] for i in pick], atol=1e-3), got
