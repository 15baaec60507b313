"""The browser panel's server: aiohttp on its own thread and event loop, one WebSocket per panel.

``cadenza play --ui [PORT]`` starts a :class:`PanelServer` beside the control
layer. It serves the page (plain HTML/JS/CSS shipped in ``static/``, no build
step, no CDN) and a WebSocket that sends each panel a frame at most
``FRAME_HZ`` times a second (read from the engine on this thread, never on the
audio thread) and takes the panel's requests (:mod:`cadenza.engine.ui.requests`).

Safe by default. Any web page the performer opens can reach 127.0.0.1, and
WebSockets are not bound by CORS, so:

- the page and the WebSocket need the per-run ``token`` from the URL printed at
  start (compared in constant time);
- the WebSocket's ``Origin`` must be the panel's own (``http://`` + the Host it was
  asked for); a page from another origin is refused with 403 and one line;
- the ``Host`` must be a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``) with
  the panel's port unless the panel was opened to the network (``--ui-host``),
  which also defeats DNS rebinding;
- patch names resolve only inside the run's patch list, never as paths.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import threading
from pathlib import Path

from aiohttp import WSMsgType, web

from cadenza.engine.control.learn import MidiLearn
from cadenza.engine.errors import CadenzaError
from cadenza.engine.ui.requests import PanelRequests
from cadenza.engine.ui.snapshot import FRAME_HZ, Frames, describe

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_PORT = 8080
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
START_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 1 << 16  # a WebSocket message past this closes that panel's socket (it reconnects)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: a panel only this machine can open."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class PanelServer:
    """Serves the panel for ``layer`` (a started ControlLayer) on ``host``:``port`` (0: any free port)."""

    def __init__(self, layer, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None):
        self.layer = layer
        self.engine = layer.engine
        self.log = layer.log
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(18)
        self.open_to_network = not is_loopback(host)
        self.learn = MidiLearn(self.engine)
        self.requests: PanelRequests | None = None  # made on the loop's thread: its ring has one producer
        self.refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="cadenza-panel", daemon=True)

    @property
    def url(self) -> str:
        """What the performer opens (the token included)."""
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{shown}:{self.port}/?token={self.token}"

    # -- life cycle ------------------------------------------------------------------

    def __enter__(self) -> "PanelServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Listen; OSError (one line) when the port cannot be had."""
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise OSError(f"panel: the server did not start within {START_TIMEOUT_S:g} s")
        if self._error is not None:
            raise OSError(f"panel: cannot listen on {self.host}:{self.port} "
                          f"({getattr(self._error, 'strerror', None) or self._error})")

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            self._thread.join(5.0)

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._stopped = asyncio.Event()
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # a port in use, a bad address: start() reports it
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_until_complete(self._stopped.wait())
        finally:
            loop.close()

    async def _listen(self) -> None:
        self.requests = PanelRequests(self.layer, self.learn)
        app = web.Application(client_max_size=MAX_FRAME_BYTES)
        app.router.add_get("/", self._page)
        app.router.add_get("/ws", self._socket)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._stopped.set()

    # -- who may come in -------------------------------------------------------------

    def refusal(self, request: web.Request, websocket: bool) -> str | None:
        """Why ``request`` is refused (one line), or None when it may come in."""
        host = request.headers.get("Host", "")
        if not self.open_to_network and host not in {f"{name}:{self.port}" for name in LOOPBACK_NAMES}:
            return f"Host {host!r} refused: the panel answers only at 127.0.0.1:{self.port} or localhost:{self.port}"
        if not hmac.compare_digest(request.query.get("token", "").encode(), self.token.encode()):
            return "missing or wrong token: open the URL cadenza printed (it ends in ?token=...)"
        origin = request.headers.get("Origin")
        if websocket and origin != f"http://{host}":
            return f"Origin {origin!r} refused: only the panel's own page (http://{host}) may connect"
        return None

    def _refuse(self, request: web.Request, why: str) -> web.Response:
        self.refused += 1
        self.log.report("panel-refused", f"{request.remote} {request.path}: {why}")
        return web.Response(status=403, text=f"cadenza panel: {why}\n")

    # -- handlers ----------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.StreamResponse:
        why = self.refusal(request, websocket=False)
        if why is not None:
            return self._refuse(request, why)
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store",
                                                                "Referrer-Policy": "no-referrer"})

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        why = self.refusal(request, websocket=True)
        if why is not None:
            return self._refuse(request, why)
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=10.0, timeout=1.0)  # close waits ≤ 1 s
        await ws.prepare(request)
        self._sockets.add(ws)
        sender = asyncio.ensure_future(self._send_frames(ws))
        try:
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    break
                await self._answer(ws, message.data if message.type == WSMsgType.TEXT else b"")
        finally:
            sender.cancel()
            self._sockets.discard(ws)
        return ws

    async def _answer(self, ws: web.WebSocketResponse, data) -> None:
        """Apply one panel message; a bad one gets an error reply and one log line, nothing else."""
        try:
            line = self.requests.apply(data)
        except (CadenzaError, ValueError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.log.report("panel-request", text)
            await ws.send_json({"type": "error", "message": text})
            return
        if line:
            await ws.send_json({"type": "notice", "message": line})

    async def _send_frames(self, ws: web.WebSocketResponse) -> None:
        """Frames to one panel at ≤ FRAME_HZ; the patch description again whenever the patch changes."""
        frames = Frames()
        graph = None
        period = 1.0 / FRAME_HZ
        while not ws.closed:
            try:
                if self.engine.graph is not graph:
                    graph = self.engine.graph
                    await ws.send_json(describe(self.layer))
                self.learn.poll()
                frame = frames.read(self.engine)
                frame["learn"] = {"armed": self.learn.armed, "unsaved": len(self.learn.learned),
                                  "mapped": {str(cc): dotted for cc, dotted in self.learn.mappings().items()}}
                frame["status"] = self.layer.status
                await ws.send_json(frame)
            except (ConnectionError, RuntimeError):  # the panel went away mid-send
                return
            except Exception as exc:  # a bug here must not end the panel's frames
                self.log.report("panel-error", f"panel frames: {type(exc).__name__}: {exc}")
            await asyncio.sleep(period)


def warn_if_open(host: str) -> str | None:
    """The warning printed when the panel listens beyond this machine."""
    if is_loopback(host):
        return None
    return (f"cadenza: warning: the panel listens on {host}, open to the network: anyone who can reach "
            "this machine and learns the URL's token can play, change params and switch patches")
