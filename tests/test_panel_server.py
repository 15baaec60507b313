"""The panel's server without a browser: token, Origin and Host checks, malformed and hostile
WebSocket messages (each one line, the audio plays on), frames at ≤ 30 Hz, MIDI learn saving,
and ``cadenza play --ui`` printing a URL that works."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from cadenza.engine.backends.null import NullBackend
from cadenza.engine.control import ControlOptions
from cadenza.engine.control.learn import LearnError, save_cc_mappings
from cadenza.engine.engine import Engine
from cadenza.engine.patch import PATCH_DIR, PatchError, load_patch
from cadenza.engine.ui.server import PanelServer, warn_if_open
from tests.helpers import playing, wait_for

REPO = Path(__file__).resolve().parent.parent
QUIET = ControlOptions(osc=False, midi=False)


@pytest.fixture
def panel():
    engine = Engine(load_patch("genie"))
    backend = NullBackend(engine, record=False)
    try:
        with playing(engine, backend, QUIET) as layer, PanelServer(layer, port=0) as server:
            yield server
    finally:
        backend.close()
        engine.close()


async def _status(url: str, headers: dict | None = None) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers or {}) as response:
            return response.status


async def _socket_status(panel: PanelServer, origin: str | None, token: str, host: str | None = None) -> int:
    headers = {"Origin": origin} if origin else {}
    if host:
        headers["Host"] = host
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(f"ws://127.0.0.1:{panel.port}/ws?token={token}", headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_only_the_panels_own_origin_with_the_token_and_a_loopback_host_gets_in(panel):
    own = f"http://127.0.0.1:{panel.port}"
    run = asyncio.run
    assert run(_status(panel.url)) == 200
    assert run(_status(panel.url.replace(panel.token, "x" * len(panel.token)))) == 403
    assert run(_status(f"{own}/")) == 403
    assert run(_status(f"{own}/static/panel.js")) == 200  # the page's code is no secret
    assert run(_socket_status(panel, own, panel.token)) == 101
    assert run(_socket_status(panel, "http://evil.example", panel.token)) == 403
    assert run(_socket_status(panel, "null", panel.token)) == 403  # a sandboxed iframe or a file:// page
    assert run(_socket_status(panel, None, panel.token)) == 403
    assert run(_socket_status(panel, own, "wrong")) == 403
    # DNS rebinding: a name that resolves to 127.0.0.1, with its own origin, is still refused
    rebound = f"rebind.example:{panel.port}"
    assert run(_socket_status(panel, f"http://{rebound}", panel.token, host=rebound)) == 403
    assert panel.refused == 7 and panel.layer.log.counts["panel-refused"] == 7
    assert panel.engine.stats.errors >= 7  # each one counted, as every bad input is


async def _conversation(panel: PanelServer, sends: list, seconds: float = 1.0) -> list[dict]:
    """Send ``sends`` (str, or bytes as binary) on one panel socket; every message received in ``seconds``."""
    got = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://127.0.0.1:{panel.port}/ws?token={panel.token}",
                                      headers={"Origin": f"http://127.0.0.1:{panel.port}"}) as ws:
            for item in sends:
                await (ws.send_bytes(item) if isinstance(item, bytes) else ws.send_str(item))
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    message = await ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
                except asyncio.TimeoutError:
                    break
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                got.append(json.loads(message.data))
            assert not ws.closed  # no message closes the panel
    return got


HOSTILE = [
    "not json", "[1, 2]", '{"no": "type"}', '{"type": "explode"}', b"\x00\x01binary",
    '{"type": "button", "button": 9, "velocity": 100}', '{"type": "button", "button": 1, "velocity": "loud"}',
    '{"type": "button", "button": true, "velocity": 100}',
    '{"type": "param", "param": "piano.cutoff", "value": NaN}', '{"type": "param", "param": "piano.cutoff", "value": Infinity}',
    '{"type": "param", "param": "nope.cutoff", "value": 1}', '{"type": "param", "param": "piano", "value": 1}',
    '{"type": "patch", "name": "../../../etc/passwd"}', '{"type": "patch", "name": "/etc/hostname"}',
    '{"type": "patch", "index": 999}', '{"type": "patch"}', '{"type": "learn", "param": "piano.nothing"}',
    '{"type": "learn_save"}', '{"type": "param", "param": "piano.cutoff", "value": ' + "9" * 5000 + "}",
]


def test_every_hostile_message_gets_one_error_line_and_the_audio_plays_on(panel):
    engine = panel.engine
    piano = engine.graph.nodes[engine.node_index("piano")]
    cutoff = piano.param("cutoff")
    blocks = engine.stats.blocks
    got = asyncio.run(_conversation(panel, HOSTILE, seconds=1.5))
    errors = [m["message"] for m in got if m["type"] == "error"]
    assert len(errors) == len(HOSTILE), errors
    assert all("\n" not in e and e for e in errors)
    assert any("not in the patch list" in e for e in errors)
    assert engine.patch.name == "genie" and engine.stats.swaps == 0 and piano.param("cutoff") == cutoff
    assert engine.stats.blocks > blocks + 100 and math.isfinite(piano.param("cutoff"))
    assert panel.layer.log.counts["panel-request"] == len(HOSTILE)


def test_frames_come_at_most_30_a_second_with_the_patch_first(panel):
    got = asyncio.run(_conversation(panel, ['{"type": "param", "param": "piano.cutoff", "value": 99999}'],
                                    seconds=2.0))
    assert got[0]["type"] == "patch" and got[0]["name"] == "genie"
    names = {(n["id"], p["name"]): p for n in got[0]["nodes"] for p in n["params"]}
    assert names[("piano", "cutoff")]["unit"] and names[("piano", "cutoff")]["hi"] > names[("piano", "cutoff")]["lo"]
    frames = [m for m in got if m["type"] == "frame"]
    assert 30 <= len(frames) <= 62, len(frames)  # 2 s at ≤ 30 Hz
    hi = names[("piano", "cutoff")]["hi"]
    index = [p["name"] for p in next(n for n in got[0]["nodes"] if n["id"] == "piano")["params"]].index("cutoff")
    assert frames[-1]["params"]["piano"][index] == pytest.approx(hi)  # clamped to its range


def test_saving_learned_ccs_keeps_comments_and_layout_and_a_backup(tmp_path):
    patch = tmp_path / "genie.toml"
    original = (PATCH_DIR / "genie.toml").read_text()
    patch.write_text(original)
    with pytest.raises(LearnError):
        save_cc_mappings(patch, {})
    with pytest.raises(PatchError):  # a mapping the patch cannot load leaves the file alone
        save_cc_mappings(patch, {20: "nope.cutoff"})
    assert patch.read_text() == original and not (tmp_path / "genie.toml.bak").exists()
    backup = save_cc_mappings(patch, {20: "piano.cutoff", 21: "room.wet"})
    assert backup.read_text() == original
    saved = patch.read_text()
    changed = [line for line in saved.splitlines() if line not in original.splitlines()]
    assert len(changed) == 1 and changed[0].startswith("cc = {"), changed  # only the cc line moved
    assert load_patch(patch).table("midi")["cc"] == {"1": "genie.temperature", "20": "piano.cutoff",
                                                     "21": "room.wet"}


def test_opening_the_panel_to_the_network_warns():
    assert warn_if_open("127.0.0.1") is None and warn_if_open("localhost") is None
    assert "open to the network" in warn_if_open("0.0.0.0")


def test_cadenza_play_ui_prints_a_url_that_serves_the_panel(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "cadenza.engine.cli", "play", "genie", "--backend", "null",
                             "--no-midi", "--no-osc", "--quiet", "--seconds", "30", "--ui", "0"],
                            cwd=REPO, env=dict(os.environ), stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"panel at (http://127\.0\.0\.1:\d+/\?token=[\w-]+)", line)
            url = found.group(1) if found else None
            assert line or proc.poll() is None
        assert url, "no panel URL printed"
        assert asyncio.run(_status(url)) == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
