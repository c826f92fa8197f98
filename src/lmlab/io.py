"""Atomic file writes, fingerprints and the one keyed artifact cache.

Atomic writes. A run killed mid-write must leave either the old file or the new one, never a truncated
file that a resumed run would read back: write to a temporary name beside the target, fsync it, then
``os.replace`` it (and fsync the directory, so the rename itself survives a power cut).

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
>>> atomic_write_text(p, '{"a": 1}') == p and p.read_text()
'{"a": 1}'

Fingerprints. :func:`fingerprint` hashes JSON-able parts; :func:`code_fingerprint` hashes the source files of
the modules an artifact declares it depends on, so editing one of them invalidates the artifact and editing
an unrelated module does not. :func:`artifact_fingerprint` (code + config + input data) and
:func:`stale_reason` are what checkpoints and finished runs carry and compare (``lmlab.train.train(code=...)``);
:func:`file_stage` / :func:`mark_file` do the same for any other saved file (a fingerprint JSON beside it), and
:func:`stage_record` / :meth:`ArtifactCache.stage` give ``summary.json``'s ``stages`` entries.

The artifact cache. :class:`ArtifactCache` is the one mechanism behind every cache of computed values
(first-token logits, reward-model scores, sentence embeddings, the zoo's correctness rows): one SQLite file
per kind, entries keyed by ``(key, input)`` where the key is the fingerprint of the model, the config and the
declared code. SQLite commits are atomic and, in its default rollback-journal mode with ``synchronous=FULL``,
fsynced; a killed computation keeps every batch committed before it. When the key differs from the one last
used under the same label, the first miss logs one line naming what changed.

>>> c = ArtifactCache("demo", model="m1", config={"k": 1}, root=pathlib.Path(tempfile.mkdtemp()))
>>> c.map(["a", "b"], lambda idx: [(idx, [len(s) for s in ("a", "b")])])
[1, 1]
>>> c.map(["a"], lambda idx: []) , c.stats
([1], {'computed': 2, 'cached': 1})
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("lmlab.cache")


# -- atomic writes -------------------------------------------------------------------------------------
@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it is fsynced and replaces
    ``path``, otherwise it is removed. The temporary name keeps the suffix, so ``np.save``/``np.savez``/
    ``torch.save``/``save_file`` add nothing to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the file itself is already on disk
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def cache_root() -> Path:
    """Where lmlab keeps caches it can rebuild (model conversions, features, the zoo): ``$LMLAB_CACHE``,
    default ``~/.cache/lmlab``."""
    return Path(os.environ.get("LMLAB_CACHE") or Path.home() / ".cache" / "lmlab").expanduser()


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json(path: str | Path, error: type[Exception] = ValueError, what: str = "", fix: str = "") -> object:
    """Parse a JSON file; a missing or malformed file raises ``error`` with one line naming the file
    (``what`` describes it, ``fix`` says what to do)."""
    import json

    path = Path(path)
    label = f"{what} {path}".strip()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{label} does not exist{': ' + fix if fix else ''}") from None
    except json.JSONDecodeError as e:
        raise error(f"{label} is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}"
                    f"{'; ' + fix if fix else ''}") from None
def atomic_write_json(path: str | Path, obj: Any, **kwargs: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, **kwargs))


# -- fingerprints --------------------------------------------------------------------------------------
def fingerprint(*parts: Any, n: int = 16) -> str:
    """sha256 of the parts (strings as UTF-8, bytes as is, anything else as canonical JSON), ``n`` hex digits.

    >>> fingerprint("a") == fingerprint("a") != fingerprint("b")
    True
    """
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, bytes):
            b = p
        elif isinstance(p, str):
            b = p.encode("utf-8")
        else:
            b = json.dumps(p, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))  # length-prefixed: ("ab", "c") != ("a", "bc")
        h.update(b)
    return h.hexdigest()[:n]


def code_fingerprint(modules: Sequence[str]) -> dict[str, str]:
    """``{module: hash of its code}`` for each declared module: the hash of its syntax tree without docstrings,
    so editing comments or docs keeps every artifact and editing code invalidates the ones that declared it.

    ``"pkg.module:name"`` declares one top-level function or class of a module instead of the whole module
    (an artifact computed by one function of a long study module is not invalidated by editing its claims).
    An unknown module or name is an error: a typo in a declaration would otherwise never invalidate anything.
    """
    import importlib.util

    out = {}
    for m in sorted(set(modules)):
        mod, _, name = m.partition(":")
        try:
            spec = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin or not Path(spec.origin).is_file():
            raise ValueError(f"code fingerprint: module {mod!r} has no source file; declare an existing module")
        source = Path(spec.origin).read_bytes()
        key = (hashlib.sha256(source).digest(), name)
        if key not in _CODE_HASHES:  # parsing is the cost (every study run declares modules); same bytes, same hash
            _CODE_HASHES[key] = fingerprint(_code_only(source, name or None, m))
        out[m] = _CODE_HASHES[key]
    return out


#: code_fingerprint's hashes by (sha256 of the module's bytes, declared name), for this process
_CODE_HASHES: dict[tuple[bytes, str], str] = {}


def artifact_fingerprint(code: Sequence[str] = (), config: Any = None, data: Any = None,
                         model: str | None = None) -> dict[str, Any]:
    """What made an artifact (a checkpoint, finished metrics, a cached table): the hashes of the declared code
    (:func:`code_fingerprint`), of the config and of the input data, and, for artifacts a pretrained model made,
    ``model``: its weights' identity (:func:`lmlab.lm.weights.weights_fingerprint`). ``digest`` is one string
    over them; :func:`stale_reason` compares two of these and says in one line what changed.

    >>> a = artifact_fingerprint(["lmlab.io"], config={"lr": 1}, data="abc")
    >>> stale_reason(a, artifact_fingerprint(["lmlab.io"], config={"lr": 1}, data="abc")) is None
    True
    >>> stale_reason(a, artifact_fingerprint(["lmlab.io"], config={"lr": 2}, data="abc"))
    'config changed'
    """
    parts = {"code": code_fingerprint(code), "config": fingerprint(config), "data": fingerprint(data)}
    if model is not None:  # absent otherwise, so fingerprints of artifacts that no model made keep their digest
        parts["model"] = model
    return {"digest": fingerprint(parts), **parts}


def stale_reason(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """None when ``old`` and ``new`` (from :func:`artifact_fingerprint`) match; otherwise why they differ, e.g.
    ``"lmlab.tasks.two_hop changed"`` or ``"no code fingerprint (written by an older lmlab)"``."""
    if not isinstance(old, dict) or "digest" not in old:
        return "no code fingerprint (written by an older lmlab)"
    if old["digest"] == new["digest"]:
        return None
    oc, nc = old.get("code") or {}, new.get("code") or {}
    why = [f"{m} changed" for m in sorted(set(oc) & set(nc)) if oc[m] != nc[m]]
    if set(oc) != set(nc):
        why.append("declared modules changed (" + ", ".join(sorted(set(oc) ^ set(nc))) + ")")
    if old.get("config") != new.get("config"):
        why.append("config changed")
    if old.get("data") != new.get("data"):
        why.append("input data changed")
    if old.get("model") != new.get("model"):
        why.append("model weights changed" if old.get("model") and new.get("model") else "model weights not recorded")
    return "; ".join(why) or "fingerprint changed"


def file_stage(path: str | Path, fp: dict[str, Any], resume: bool = True) -> dict[str, Any]:
    """Whether the file ``path`` (an artifact saved with :func:`mark_file`) may be reused for ``fp``
    (:func:`artifact_fingerprint`): a ``stages`` record whose ``computed`` is False when it may. A file without
    a matching fingerprint beside it is recomputed, and one line (logger ``lmlab.cache``) says why.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "a.pt"
    >>> fp = artifact_fingerprint(["lmlab.io"], config={"k": 1})
    >>> file_stage(f, fp)["computed"], (f.write_text("x"), mark_file(f, fp))[0]
    (True, 1)
    >>> file_stage(f, fp)["reason"], file_stage(f, fp, resume=False)["computed"]
    ('reused: the file with the same fingerprint', True)
    >>> file_stage(f, artifact_fingerprint(["lmlab.io"], config={"k": 2}))["reason"]
    'recomputed because config changed'
    """
    path = Path(path)
    rec: dict[str, Any] = {"computed": True, "fingerprint": fp["digest"], "reason": "computed now"}
    if not resume or not path.exists():
        return rec
    side = path.with_name(path.name + ".fingerprint.json")
    try:
        old = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    why = stale_reason(old, fp)
    if why is None:
        return {**rec, "computed": False, "reason": "reused: the file with the same fingerprint"}
    log.warning("%s: recomputed because %s", path, why)
    return {**rec, "reason": f"recomputed because {why}"}


def mark_file(path: str | Path, fp: dict[str, Any]) -> Path:
    """Record ``fp`` beside the artifact ``path`` (after writing it), for :func:`file_stage`."""
    path = Path(path)
    return atomic_write_json(path.with_name(path.name + ".fingerprint.json"), fp, sort_keys=True)


def _code_only(source: bytes, name: str | None = None, label: str = "") -> str | bytes:
    """The module's syntax tree (or that of its top-level definition ``name``) with docstrings dropped
    (comments never reach the tree)."""
    import ast

    try:
        tree: ast.AST = ast.parse(source)
    except SyntaxError:
        return source
    if name is not None:
        found = [n for n in tree.body if getattr(n, "name", None) == name  # type: ignore[attr-defined]
                 or (isinstance(n, (ast.Assign, ast.AnnAssign)) and name in {
                     t.id for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)})]
        if not found:
            raise ValueError(f"code fingerprint: {label!r}: the module defines no top-level {name!r}")
        tree = ast.Module(body=found, type_ignores=[])
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


# -- the artifact cache --------------------------------------------------------------------------------
def _encode(value: Any) -> tuple[str, bytes]:
    if isinstance(value, np.ndarray):
        buf = _io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return "npy", buf.getvalue()
    return "json", json.dumps(value).encode("utf-8")


def _decode(fmt: str, blob: bytes) -> Any:
    if fmt == "npy":
        return np.load(_io.BytesIO(blob), allow_pickle=False)
    if fmt == "json":
        return json.loads(blob.decode("utf-8"))
    raise ValueError(f"unknown cache format {fmt!r}")


class ArtifactCache:
    """Computed values keyed by what made them: ``kind`` + fingerprints of model, config, declared code + input.

    ``model`` is a model fingerprint (``lm.fingerprint``), ``config`` anything JSON-able that changes the values,
    ``code`` the modules whose source the values depend on. ``label`` names the slot whose last key is
    remembered, so a changed key is explained (default: the model fingerprint). ``root=None`` uses
    :func:`cache_root`; :meth:`off` gives a cache that stores nothing (same interface).
    """

    def __init__(self, kind: str, *, model: str = "", config: Any = None, code: Sequence[str] = (),
                 root: str | Path | None = None, label: str | None = None):
        self.kind = kind
        self.parts = {"model": model, "config": config, "code": code_fingerprint(code)}
        self.digest = fingerprint(kind, self.parts)
        self.label = label if label is not None else model
        self.path: Path | None = (Path(root) if root is not None else cache_root()) / f"{kind}.sqlite"
        self.stats = {"computed": 0, "cached": 0}
        self.reason: str | None = None  # why entries under an earlier key do not apply (logged on the first miss)
        self._logged = False
        self._con: sqlite3.Connection | None = None
        self._open()

    @classmethod
    def off(cls, kind: str = "off") -> ArtifactCache:
        c = cls.__new__(cls)
        c.kind, c.parts, c.digest, c.label, c.path = kind, {}, "", "", None
        c.stats, c.reason, c._logged, c._con = {"computed": 0, "cached": 0}, None, False, None
        return c

    @property
    def enabled(self) -> bool:
        return self.path is not None

    # -- storage -------------------------------------------------------------------------------------
    def _open(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(self.path), timeout=120, check_same_thread=False)
        con.execute("PRAGMA synchronous=FULL")
        with con:
            con.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT, item TEXT, fmt TEXT, value BLOB, "
                        "PRIMARY KEY (key, item))")
            con.execute("CREATE TABLE IF NOT EXISTS slots (label TEXT PRIMARY KEY, key TEXT, parts TEXT)")
            row = con.execute("SELECT key, parts FROM slots WHERE label = ?", (self.label,)).fetchone()
            if row is not None and row[0] != self.digest:
                old = json.loads(row[1])
                self.reason = _why(old, self.parts)
                if old.get("model") == self.parts["model"] and old.get("config") == self.parts["config"]:
                    # only the code changed: those entries can never be right again
                    con.execute("DELETE FROM entries WHERE key = ?", (row[0],))
            con.execute("INSERT OR REPLACE INTO slots VALUES (?, ?, ?)",
                        (self.label, self.digest, json.dumps(self.parts, sort_keys=True, default=str)))
        self._con = con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __del__(self) -> None:  # noqa: D105
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def get(self, item: str) -> Any | None:
        """The value stored for the input key ``item`` (see :func:`fingerprint`), or None."""
        if self._con is None:
            return None
        row = self._con.execute("SELECT fmt, value FROM entries WHERE key = ? AND item = ?",
                                (self.digest, item)).fetchone()
        if row is None:
            return None
        try:
            return _decode(row[0], row[1])
        except (ValueError, OSError, EOFError, UnicodeDecodeError):  # a damaged entry is recomputed, never trusted
            with self._con:
                self._con.execute("DELETE FROM entries WHERE key = ? AND item = ?", (self.digest, item))
            return None

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """Store several values in one transaction (committed together or not at all)."""
        if self._con is None:
            return
        rows = [(self.digest, k, *_encode(v)) for k, v in items]
        with self._con:
            self._con.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows)

    def put(self, item: str, value: Any) -> None:
        self.put_many([(item, value)])

    def stage(self, computed: int | None = None, cached: int | None = None) -> dict[str, Any]:
        """This cache's record for ``summary.json``'s ``stages``: computed now or reused, the key (fingerprint of
        model, config and declared code) and why. Counts default to :attr:`stats` (``computed``/``cached``
        entries); pass them for a cache read with :meth:`get` rather than :meth:`map`."""
        n_new = self.stats["computed"] if computed is None else computed
        n_old = self.stats["cached"] if cached is None else cached
        return stage_record(n_new, n_old, self.digest if self.enabled else "",
                            None if self.enabled else "no cache", self.reason)

    def __len__(self) -> int:
        if self._con is None:
            return 0
        return int(self._con.execute("SELECT COUNT(*) FROM entries WHERE key = ?", (self.digest,)).fetchone()[0])

    # -- the one caching loop ----------------------------------------------------------------------------
    def map(self, inputs: Sequence[Any], compute: Callable[[list[int]], Iterable[tuple[Sequence[int], Any]]],
            keys: Sequence[str] | None = None) -> list[Any]:
        """Values for ``inputs``: cached ones read back, the rest computed and stored batch by batch.

        ``compute(missing_indices)`` yields ``(indices, values)`` batches (any order, each index once); each
        batch is committed as it arrives, so a killed computation resumes after its last finished batch.
        """
        keys = list(keys) if keys is not None else [fingerprint(x) for x in inputs]
        out: list[Any] = [None] * len(inputs)
        todo = []
        for i, k in enumerate(keys):
            v = self.get(k)
            if v is None:
                todo.append(i)
            else:
                out[i] = v
        self.stats["cached"] += len(inputs) - len(todo)
        if todo:
            if self.reason and not self._logged and self.enabled:
                log.warning("cache %s [%s]: computing %d entries anew: %s", self.kind, self.label, len(todo),
                            self.reason)
                self._logged = True
            for idx, values in compute(todo):
                idx = list(idx)
                for i, v in zip(idx, values):
                    out[i] = v
                self.put_many((keys[i], out[i]) for i in idx)
                self.stats["computed"] += len(idx)
            left = [i for i in todo if out[i] is None]
            if left:
                raise RuntimeError(f"cache {self.kind}: compute() returned no value for {len(left)} inputs")
        return out


def stage_record(computed: int, reused: int, fingerprint: str, note: str | None = None,
                 stale: str | None = None) -> dict[str, Any]:
    """One entry of ``summary.json``'s ``stages`` for a stage of ``computed`` new and ``reused`` earlier items.

    >>> stage_record(0, 5, "ab12")["reason"]
    'reused: 5 entries with the same fingerprint'
    >>> stage_record(3, 0, "ab12", stale="code of lmlab.zoo changed")["reason"]
    'computed now (3 entries): earlier ones not used because code of lmlab.zoo changed'
    """
    if computed == 0 and reused > 0:
        reason = f"reused: {reused} entries with the same fingerprint"
    elif reused == 0:
        reason = f"computed now ({computed} entries)"
    else:
        reason = f"computed now: {computed} entries; reused: {reused} with the same fingerprint"
    if note:
        reason += f" ({note})"
    if stale and computed:
        reason += f": earlier ones not used because {stale}"
    return {"computed": bool(computed) or not reused, "fingerprint": fingerprint, "reason": reason,
            "n_computed": int(computed), "n_reused": int(reused)}


def _why(old: dict[str, Any], new: dict[str, Any]) -> str:
    """One line naming what differs between two cache keys."""
    why = []
    if old.get("model") != new.get("model"):
        why.append(f"model fingerprint {old.get('model')} -> {new.get('model')}")
    if old.get("config") != new.get("config"):
        a, b = old.get("config"), new.get("config")
        if isinstance(a, dict) and isinstance(b, dict):
            diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            why.append("config " + "; ".join(diff)[:200])
        else:
            why.append("config changed")
    oc, nc = old.get("code") or {}, new.get("code") or {}
    edited = sorted(m for m in set(oc) | set(nc) if oc.get(m) != nc.get(m))
    if edited:
        why.append("code of " + ", ".join(edited) + " changed")
    return "; ".join(why) or "key changed"
