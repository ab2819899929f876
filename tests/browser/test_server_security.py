"""The running server enforces .streamlit/config.toml: uploads need the XSRF token, and other
sites get neither CORS headers nor a WebSocket (the app's session channel)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.browser

EVIL = "http://evil.example"


def _request(method: str, url: str, headers: dict, data: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, headers=headers, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}


def _websocket(url: str, origin: str) -> str:
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    async def connect() -> str:
        try:
            conn = await websocket_connect(HTTPRequest(url, headers={"Origin": origin}, request_timeout=10))
        except HTTPClientError as exc:
            return f"refused {exc.code}"
        conn.close()
        return "connected"

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(connect())).result(timeout=30)


def test_upload_without_the_xsrf_token_is_refused(server):
    status, _ = _request("PUT", f"{server}/_stcore/upload_file/some-session/some-file", {}, b"text\nhello\n")
    assert status == 403


def test_other_sites_get_no_cors_headers(server):
    status, headers = _request("GET", f"{server}/_stcore/health", {"Origin": EVIL})
    assert status == 200
    assert headers.get("access-control-allow-origin") not in ("*", EVIL)


def test_other_sites_cannot_open_a_session(server):
    stream = server.replace("http://", "ws://") + "/_stcore/stream"
    assert _websocket(stream, EVIL) == "refused 403"
    # The app's own origin still connects (the browser tests depend on it too).
    assert _websocket(stream, server) == "connected"
