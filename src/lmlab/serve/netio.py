"""Fewer socket writes per request, on both of a gateway's HTTP hops.

- The upstream client (:func:`upstream_transport`): httpx over httpcore, with a request's writes coalesced.
- The server (:class:`CoalescingHttpProtocol`): uvicorn's HTTP protocol, with a response's writes coalesced.

Upstream side:

httpcore's HTTP/1.1 connection writes a request's head and its body with two separate socket writes. On a busy
machine each write to a loopback or LAN peer is a wake-up of the peer (which then parses a head and waits for a
body), so the second hop of a gateway paid two round trips through the scheduler where one is enough. httpcore
lets a network backend be plugged in (its documented ``AsyncNetworkBackend`` interface); this one wraps the
default backend and keeps a stream's writes in a buffer until the connection next reads (for HTTP/1.1: once the
whole request is written), then sends them with one write. Everything else (connection pool, keep-alive, h11
parsing, TLS, timeouts, exceptions) stays httpx's and httpcore's.
"""

from __future__ import annotations

from typing import Any

import httpcore
import httpx


class CoalescingStream(httpcore.AsyncNetworkStream):
    """Buffers ``write`` calls; the buffer is sent in one write before the next ``read`` (or TLS upgrade)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream):
        self.inner = inner
        self._buf: list[bytes] = []
        self._write_timeout: float | None = None

    async def _flush(self) -> None:
        if self._buf:
            data = b"".join(self._buf) if len(self._buf) > 1 else self._buf[0]
            self._buf = []
            await self.inner.write(data, self._write_timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._buf.append(bytes(buffer))
            self._write_timeout = timeout

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush()
        return await self.inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._buf = []
        await self.inner.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        await self._flush()
        return CoalescingStream(await self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class CoalescingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None):
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return CoalescingStream(await self.inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return CoalescingStream(await self.inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def env_proxy(url: str) -> str | None:
    """The proxy that ``$HTTP_PROXY``/``$HTTPS_PROXY``/``$ALL_PROXY`` (minus ``$NO_PROXY``) name for ``url``, as
    httpx's client would pick it (the transport below is used without a client, so it reads them here)."""
    import urllib.request

    u = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass_environment(u.host, proxies):
        return None
    return proxies.get(u.scheme) or proxies.get("all")


def upstream_transport(url: str, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's own transport for ``url`` (its connection pool, keep-alive, TLS, proxy from the environment,
    httpx exceptions), called without an ``AsyncClient``: a gateway's upstream calls need none of the client's
    per-request work (URL merging, cookies, auth and redirect handling), which cost about as much CPU as the
    transport itself. Without a proxy its pool uses the coalescing network backend. httpx has no public
    argument for httpcore's network backend, so it is set on the pool httpx built; if a future httpx lays its
    transport out differently, the transport is used as it is (correct, one write more per request)."""
    proxy = env_proxy(url)
    t = httpx.AsyncHTTPTransport(limits=limits, proxy=proxy)
    pool = getattr(t, "_pool", None)
    inner = getattr(pool, "_network_backend", None)
    if proxy is None and isinstance(pool, httpcore.AsyncConnectionPool) and isinstance(inner, httpcore.AsyncNetworkBackend):
        pool._network_backend = CoalescingBackend(inner)
    return t


class CoalescingTransport:
    """An asyncio transport whose writes made during one step of the event loop go out as one write at the end
    of that step. uvicorn writes a response's status line and headers, then its body, as two writes; with this
    a whole (non-streamed) response is one write, so the client is woken once. Streamed chunks are delayed by
    at most one loop step. Everything but writing and closing is the wrapped transport's."""

    def __init__(self, transport: Any):
        import asyncio

        self._t = transport
        self._buf: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._scheduled = False

    def write(self, data: Any) -> None:
        if not data:
            return
        self._buf.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def _flush(self) -> None:
        self._scheduled = False
        if self._buf:
            data = b"".join(self._buf) if len(self._buf) > 1 else self._buf[0]
            self._buf = []
            if not self._t.is_closing():
                self._t.write(data)

    def get_write_buffer_size(self) -> int:
        return self._t.get_write_buffer_size() + sum(len(b) for b in self._buf)

    def close(self) -> None:
        self._flush()
        self._t.close()

    def abort(self) -> None:
        self._buf = []
        self._t.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


try:  # the protocol uvicorn's "auto" picks: httptools when installed, else h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornHttp
except ImportError:  # pragma: no cover - without httptools
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornHttp


class CoalescingHttpProtocol(_UvicornHttp):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol on a :class:`CoalescingTransport` (uvicorn takes a protocol class as ``http``)."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport))


__all__ = ["CoalescingBackend", "CoalescingStream", "CoalescingTransport", "CoalescingHttpProtocol", "env_proxy",
           "upstream_transport"]
