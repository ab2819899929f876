"""A visitor of the app without a browser: one Streamlit session driven over the app's own
WebSocket protocol, so a load test can hold fifty sessions on two cores where fifty Chromium
pages would not fit.

It speaks what Streamlit's front end speaks (``/_stcore/stream``, the protobuf ``BackMsg`` /
``ForwardMsg`` classes that ship with Streamlit, read with the kept ``websockets`` client): a
rerun carries the page and the widget values, the server answers with the page's elements
(deltas) and ``script_finished``; a fragment that asks to rerun itself every second
(``auto_rerun``, as the job panel does) is rerun while the visitor waits; a file is uploaded as
the front end does it (``file_urls_request``, then an HTTP PUT with the XSRF cookie and header).
Widgets are found by their key (a widget's id ends in ``-{key}``). What the page shows is kept
as a flat map of elements by their position, so a visitor can read its messages
(:meth:`Visitor.texts`), count its charts and see an exception the app let through.
"""

from __future__ import annotations

import asyncio
import http.cookies
import time
import urllib.request
import uuid
from dataclasses import dataclass

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import UploadedFileInfo
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

__all__ = ["Run", "Visitor", "VisitorError"]

_EARLY_FOR_RERUN = 2  # ForwardMsg.FINISHED_EARLY_FOR_RERUN: a newer run replaced this one
_FRAGMENT_DONE = 3
XSRF_COOKIE = "_streamlit_xsrf"
_TEXT_KINDS = ("markdown", "text", "alert", "heading", "exception", "code")


class VisitorError(RuntimeError):
    """The server did not answer as a browser would expect (closed, timed out, no such widget)."""


@dataclass(frozen=True)
class Run:
    """One script run the visitor asked for: wall ``seconds`` from the request to its
    ``script_finished``, and whether it finished cleanly."""

    seconds: float
    ok: bool


def _xsrf_cookie(url: str) -> str | None:
    """The XSRF cookie the server sets on its health endpoint (None when XSRF is off)."""
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=30) as resp:
        for header in resp.headers.get_all("Set-Cookie") or []:
            cookie = http.cookies.SimpleCookie(header)
            if XSRF_COOKIE in cookie:
                return cookie[XSRF_COOKIE].value
    return None


def _multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _widget_state(kind: str, widget_id: str, value) -> WidgetState:
    state = WidgetState(id=widget_id)
    if kind in ("text_area", "text_input", "selectbox", "radio"):
        state.string_value = str(value)
    elif kind == "slider":
        state.double_array_value.data.extend([float(value)])
    elif kind in ("checkbox", "toggle"):
        state.bool_value = bool(value)
    elif kind == "multiselect":
        state.string_array_value.data.extend([str(v) for v in value])
    elif kind == "number_input":
        state.double_value = float(value)
    elif kind == "file_uploader":
        state.file_uploader_state_value.uploaded_file_info.extend(value)
    else:
        raise VisitorError(f"setting a {kind} widget is not supported by this client")
    return state


class Visitor:
    """One browser tab's session, over the WebSocket. Use as ``async with Visitor(url) as v:``."""

    def __init__(self, url: str, timeout: float = 600.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session_id: str | None = None
        self.pages: dict[str, str] = {}  # url path ("" for the entry page) -> page script hash
        self.page_hash = ""
        self.query_string = ""
        self.progress_seen: list[str] = []  # every progress bar text received, in order
        self._elements: dict[tuple, tuple[int, str, object]] = {}  # path -> (run, kind, proto)
        self._run = 0
        self._values: dict[str, object] = {}  # widget key -> value sent with every rerun
        self._auto: dict[str, float] = {}  # fragment id -> seconds between its reruns
        self._finished: asyncio.Future | None = None
        self._files: dict[str, asyncio.Future] = {}
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._xsrf: str | None = None

    async def __aenter__(self) -> Visitor:
        self._xsrf = await asyncio.to_thread(_xsrf_cookie, self.url)
        headers = {"Cookie": f"{XSRF_COOKIE}={self._xsrf}"} if self._xsrf else {}
        self._ws = await websockets.connect(
            self.url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"], origin=self.url,
            additional_headers=headers, max_size=64 * 2**20, open_timeout=self.timeout, ping_interval=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass

    # -- what the server sends --------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                msg = ForwardMsg()
                msg.ParseFromString(raw)
                self._handle(msg)
        except websockets.ConnectionClosed as exc:
            self._fail(VisitorError(f"the server closed the connection ({exc})"))
        except Exception as exc:  # a broken message: the waiting caller hears of it
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        for future in [self._finished, *self._files.values()]:
            if future is not None and not future.done():
                future.set_exception(exc)

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":  # a script run starts: the whole page, or only some fragments
            if not msg.metadata.run.fragment_ids:
                self._run += 1
                self._auto.clear()
            self.session_id = msg.new_session.initialize.session_id or self.session_id
            self.page_hash = msg.new_session.page_script_hash or self.page_hash
        elif kind == "page_info_changed":  # the app wrote to the URL's query (st.query_params)
            self.query_string = msg.page_info_changed.query_string
        elif kind == "navigation":
            self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
            self.page_hash = msg.navigation.page_script_hash or self.page_hash
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            element_kind = element.WhichOneof("type")
            proto = getattr(element, element_kind)
            self._elements[tuple(msg.metadata.delta_path)] = (self._run, element_kind, proto)
            if element_kind == "progress":  # a bar's texts pass quickly: each one is kept
                self.progress_seen.append(proto.text)
        elif kind == "auto_rerun":
            self._auto[msg.auto_rerun.fragment_id] = float(msg.auto_rerun.interval)
        elif kind == "file_urls_response":
            future = self._files.pop(msg.file_urls_response.response_id, None)
            if future is not None and not future.done():
                future.set_result(msg.file_urls_response)
        elif kind == "script_finished":
            status = int(msg.script_finished)
            if status == _EARLY_FOR_RERUN:
                return
            if status != _FRAGMENT_DONE:  # what the finished full run did not draw again is gone
                self._elements = {p: e for p, e in self._elements.items() if e[0] == self._run}
            if self._finished is not None and not self._finished.done():
                self._finished.set_result(status)

    # -- what the visitor does ----------------------------------------------------------------------
    def _find(self, key: str) -> tuple[str, str] | None:
        """(element kind, widget id) of the widget with user key ``key`` on the page now."""
        for _, kind, proto in self._elements.values():
            widget_id = getattr(proto, "id", "")
            if widget_id.endswith(f"-{key}"):
                return kind, widget_id
        return None

    def has_widget(self, key: str) -> bool:
        return self._find(key) is not None

    async def rerun(self, values: dict | None = None, *, page: str | None = None, trigger: str | None = None,
                    fragment: str | None = None) -> Run:
        """Ask for a script run (as the front end does after a widget changes) and wait for it to
        finish: ``values`` widget key -> value, sent from now on with every rerun; ``page`` (its url
        path, "" for the entry page) to move to; ``trigger`` the key of a button pressed in this
        run; ``fragment`` to rerun only that fragment."""
        self._values.update(values or {})
        if page is not None and (page or self.pages):  # the first run opens the entry page by its empty path
            if page not in self.pages:
                raise VisitorError(f"no page '{page}'; the app has {sorted(self.pages)}")
            self.page_hash = self.pages[page]
        msg = BackMsg()
        state = msg.rerun_script
        state.page_script_hash = self.page_hash
        state.query_string = self.query_string
        if fragment:
            state.fragment_id = fragment
            state.is_auto_rerun = True
        for key, value in self._values.items():
            found = self._find(key)
            if found is not None:
                state.widget_states.widgets.append(_widget_state(found[0], found[1], value))
        if trigger is not None:
            found = self._find(trigger)
            if found is None:
                raise VisitorError(f"no button '{trigger}' on the page")
            state.widget_states.widgets.append(WidgetState(id=found[1], trigger_value=True))
        self._finished = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        await self._ws.send(msg.SerializeToString())
        status = await asyncio.wait_for(self._finished, self.timeout)
        return Run(time.perf_counter() - start, status in (0, _FRAGMENT_DONE))

    async def upload(self, key: str, filename: str, data: bytes) -> Run:
        """Upload ``data`` as ``filename`` into the file uploader ``key`` and wait for the rerun."""
        found = self._find(key)
        if found is None:
            raise VisitorError(f"no file uploader '{key}' on the page")
        request_id = uuid.uuid4().hex
        self._files[request_id] = asyncio.get_running_loop().create_future()
        msg = BackMsg()
        msg.file_urls_request.request_id = request_id
        msg.file_urls_request.session_id = self.session_id or ""
        msg.file_urls_request.file_names.append(filename)
        start = time.perf_counter()
        await self._ws.send(msg.SerializeToString())
        response = await asyncio.wait_for(self._files[request_id], self.timeout)
        urls = response.file_urls[0]
        body, content_type = _multipart(filename, data)
        request = urllib.request.Request(
            self.url + urls.upload_url if urls.upload_url.startswith("/") else urls.upload_url, data=body,
            method="PUT", headers={"Content-Type": content_type, "X-Xsrftoken": self._xsrf or "",
                                   "Cookie": f"{XSRF_COOKIE}={self._xsrf}", "Origin": self.url})
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=self.timeout)
        info = UploadedFileInfo(file_id=urls.file_id, name=filename, size=len(data))
        info.file_urls.CopyFrom(urls)
        run = await self.rerun({key: [info]})
        return Run(time.perf_counter() - start, run.ok)

    async def wait_until(self, done, timeout: float) -> bool:
        """Keep the page's self-rerunning fragments going (a job's progress) until ``done(self)``
        is true (True) or ``timeout`` seconds pass, or nothing on the page will change (False)."""
        deadline = time.monotonic() + timeout
        while not done(self):
            if not self._auto or time.monotonic() > deadline:
                return done(self)
            fragment, interval = next(iter(self._auto.items()))
            await asyncio.sleep(interval)
            await self.rerun(fragment=fragment)
        return True

    # -- what the page shows --------------------------------------------------------------------------
    def elements(self, kind: str) -> list:
        return [self._elements[p][2] for p in sorted(self._elements) if self._elements[p][1] == kind]

    def count(self, kind: str) -> int:
        return sum(1 for _, k, _ in self._elements.values() if k == kind)

    def has_chart(self, key: str) -> bool:
        """Whether the page shows the chart drawn with widget key ``key``."""
        return any(proto.id.endswith(f"-{key}") for proto in self.elements("plotly_chart"))

    def texts(self) -> list[str]:
        """The words on the page: Markdown, text, alerts, headings, progress bars' texts, exceptions."""
        out = []
        for path in sorted(self._elements):
            _, kind, proto = self._elements[path]
            if kind in _TEXT_KINDS:
                out.append(getattr(proto, "body", "") or getattr(proto, "message", "") or getattr(proto, "code_text", ""))
            elif kind == "progress":
                out.append(proto.text)
        return out

    def alerts(self, format_name: str) -> list[str]:
        """Bodies of the alerts of one format on the page ("ERROR", "WARNING", "INFO", "SUCCESS")."""
        from streamlit.proto.Alert_pb2 import Alert

        wanted = Alert.Format.Value(format_name)
        return [proto.body for proto in self.elements("alert") if proto.format == wanted]

    @property
    def exceptions(self) -> list[str]:
        """Exceptions the app let reach the page (none in a healthy app)."""
        return [proto.message for proto in self.elements("exception")]
