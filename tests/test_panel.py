"""The browser panel in a real headless Chromium: Genie buttons sound, sliders move params, the beat
display follows a click track, MIDI learn over real JACK MIDI, and a page from another origin is refused."""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.jackprobe import JackProbe
from cadenza.engine.audio_io import write_wav
from cadenza.engine.backends.null import NullBackend
from cadenza.engine.control import ControlOptions
from cadenza.engine.engine import Engine
from cadenza.engine.fileinput import FileInput
from cadenza.engine.patch import PATCH_DIR, load_patch
from tests.helpers import engine_from_toml, wait_for
from tests.panel_browser import chromium_driver, element, panel_open, text_of
from tests.test_beat import SR, click_track

QUIET = ControlOptions(osc=False, midi=False)

BEAT_PATCH = """
[patch]
description = "a beat listener on the input"
[audio]
inputs = 1
[[node]]
id = "beat"
type = "beat"
input = "adc"
"""


@pytest.fixture(scope="module")
def browser():
    driver = chromium_driver()
    yield driver
    driver.quit()


def press(browser, button, y_fraction: float, hold_s: float = 0.25, kind: str = "mouse") -> None:
    """A real pointer press (``kind`` "mouse" or "touch") on ``button`` at ``y_fraction`` of its
    height (0 top .. 1 bottom)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    dy = int((y_fraction - 0.5) * button.size["height"])
    actions = ActionBuilder(browser, mouse=PointerInput(kind, f"{kind}-pointer"))
    actions.pointer_action.move_to(button, 0, dy).pointer_down().pause(hold_s).pointer_up()
    actions.perform()


def test_mouse_touch_and_keys_on_genie_buttons_make_notes_on_jack_louder_lower_on_the_key(browser, jack_server):
    from selenium.webdriver import ActionChains

    from cadenza.engine.backends.jack import JackBackend

    server = jack_server(128)
    engine = Engine(load_patch("genie"), block=server.period)
    backend = JackBackend(engine, connect="none", record=True)
    pressed = []  # the engine's sample at each press
    try:
        with panel_open(browser, engine, backend, QUIET):
            button = element(browser, '.genie-button[data-button="4"]')
            time.sleep(0.5)  # silence before the first press
            # a mouse near the top: soft; a finger near the bottom: loud; key J
            for how in ((0.05, "mouse"), (0.95, "touch"), "key"):
                pressed.append(engine.clock.sample_time)
                if how == "key":
                    ActionChains(browser).key_down("j").pause(0.25).key_up("j").perform()
                else:
                    press(browser, button, how[0], kind=how[1])
                time.sleep(1.5)
        end = engine.clock.sample_time
        audio = backend.recording()[0]
    finally:
        backend.close()
        engine.close()
    sr = engine.sample_rate
    starts = [p - (end - audio.shape[0]) for p in pressed]  # the recording ends at the engine's last sample
    assert starts[0] > 0.3 * sr
    assert np.abs(audio[starts[0] - int(0.3 * sr): starts[0]]).max() < 1e-4  # silent before the first press
    peaks = [float(np.abs(audio[i: i + int(0.5 * sr)]).max()) for i in starts]
    before = [float(np.abs(audio[i - int(0.1 * sr): i]).max()) for i in starts]  # the tail of the last one
    assert all(p > 0.003 and p > 3 * b for p, b in zip(peaks, before)), (peaks, before)  # each press: a note
    assert peaks[1] > 1.5 * peaks[0], peaks  # velocity from where the key was touched


def test_moving_a_slider_changes_the_param(browser):
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.keys import Keys

    engine = Engine(load_patch("genie"))
    backend = NullBackend(engine)
    piano = engine.graph.nodes[engine.node_index("piano")]
    spec = piano.PARAMS["cutoff"]
    try:
        with panel_open(browser, engine, backend, QUIET):
            slider = element(browser, "#param-piano-cutoff")
            assert piano.param("cutoff") == pytest.approx(4200.0)
            ActionChains(browser).move_to_element_with_offset(slider, -slider.size["width"] // 2 + 2, 0) \
                .click().perform()  # the slider's left end
            assert wait_for(lambda: piano.param("cutoff") < spec.lo + 0.05 * (spec.hi - spec.lo), 5), \
                piano.param("cutoff")
            slider.send_keys(Keys.END)
            assert wait_for(lambda: piano.param("cutoff") == pytest.approx(spec.hi), 5), piano.param("cutoff")
            shown = text_of(browser, "value-piano-cutoff")
            assert wait_for(lambda: text_of(browser, "value-piano-cutoff").startswith(f"{spec.hi:.0f}"), 5), shown
    finally:
        backend.close()
        engine.close()


def test_beat_display_advances_on_a_click_track(browser, tmp_path):
    x, _ = click_track([(0.0, 120.0)], 8.0)
    wav = tmp_path / "clicks.wav"
    write_wav(wav, x[None, :], SR)
    engine = engine_from_toml(BEAT_PATCH, tmp_path, sample_rate=SR, block=128)
    engine.input_file = FileInput(wav, SR, 1, engine.block, loop=True)
    backend = NullBackend(engine, record=False)
    try:
        with panel_open(browser, engine, backend, QUIET):
            assert element(browser, "#beat-box").is_displayed()
            browser.execute_script("""
                window.flashes = 0;
                new MutationObserver(() => {
                  if (document.getElementById('beat-flash').classList.contains('on')) window.flashes++;
                }).observe(document.getElementById('beat-flash'), {attributes: true});""")
            assert wait_for(lambda: int(text_of(browser, "beats-heard")) >= 3, 30), text_of(browser, "beats-heard")
            heard = int(text_of(browser, "beats-heard"))
            time.sleep(2.0)  # 120 bpm: four more beats
            assert int(text_of(browser, "beats-heard")) >= heard + 3
            assert float(text_of(browser, "listener-bpm")) == pytest.approx(120.0, abs=4.0)
            assert browser.execute_script("return window.flashes") >= 3
    finally:
        backend.close()
        engine.close()


def test_midi_learn_in_the_browser_with_real_jack_midi_and_save(browser, jack_server, tmp_path):
    from cadenza.engine.backends.jack import JackBackend

    server = jack_server(128)
    patch = tmp_path / "genie.toml"
    shutil.copy(PATCH_DIR / "genie.toml", patch)
    original = patch.read_text()
    engine = Engine(load_patch(patch), block=server.period)
    backend = JackBackend(engine, connect="none", record=False)
    sender = JackProbe("sender", midi_out=True)
    piano = engine.graph.nodes[engine.node_index("piano")]
    spec = piano.PARAMS["cutoff"]
    try:
        with panel_open(browser, engine, backend, ControlOptions(osc=False)) as (layer, panel):
            sender.connect("sender:midi_out", "cadenza:midi_in")
            time.sleep(0.3)  # as the JACK MIDI tests do: the connection is in the graph by then
            element(browser, "#learn-piano-cutoff").click()
            assert wait_for(lambda: text_of(browser, "learn-piano-cutoff") == "move a CC…", 5)
            # a knob turn is a stream of CCs: one lost to a late cycle (an xrun on a loaded machine
            # drops that cycle's MIDI, as JACK does) must not fail the gesture
            def turn(value: int) -> None:
                sender.schedule(*[[(0, bytes([0xB0, 21, value]))]] * 8)

            turn(64)
            assert wait_for(lambda: text_of(browser, "learn-piano-cutoff") == "CC 21", 5), \
                (panel.learn.armed, engine.midi_map.ccs_seen, engine.midi_map.last_cc, sender.sent, sender.queue,
                 engine.stats.xruns)
            turn(0)  # the learned CC moves the param at once
            assert wait_for(lambda: piano.param("cutoff") == pytest.approx(spec.lo), 5), piano.param("cutoff")
            turn(127)
            assert wait_for(lambda: piano.param("cutoff") == pytest.approx(spec.hi), 5), piano.param("cutoff")
            element(browser, "#learn-save").click()
            assert wait_for(lambda: "saved 1 CC mapping" in text_of(browser, "messages"), 5), \
                text_of(browser, "messages")
    finally:
        sender.close()
        backend.close()
        engine.close()
    saved = patch.read_text()
    assert (tmp_path / "genie.toml.bak").read_text() == original
    assert '21 = "piano.cutoff"' in saved and '74 = "piano.cutoff"' not in saved  # one CC per param
    assert "# Play it: the white keys" in saved and 'temperature = 0.0      # 0 = the most likely' in saved
    assert load_patch(patch).table("midi")["cc"]["21"] == "piano.cutoff"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_a_page_from_another_origin_is_refused_and_the_audio_plays_on(browser, tmp_path):
    engine = Engine(load_patch("genie"))
    backend = NullBackend(engine, record=False)
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                           lambda *a: _QuietHandler(*a, directory=str(tmp_path)))
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        with panel_open(browser, engine, backend, QUIET) as (layer, panel):
            # the token is right: only the Origin gives this page away
            (tmp_path / "evil.html").write_text(f"""<!doctype html><title>waiting</title><script>
                const ws = new WebSocket("ws://127.0.0.1:{panel.port}/ws?token={panel.token}");
                ws.onopen = () => {{ document.title = "open"; }};
                ws.onclose = () => {{ if (document.title !== "open") document.title = "refused"; }};
                </script>""")
            browser.get(f"http://127.0.0.1:{site.server_address[1]}/evil.html")
            assert wait_for(lambda: browser.title in ("open", "refused"), 10), browser.title
            assert browser.title == "refused"
            assert panel.refused == 1 and layer.log.counts["panel-refused"] == 1
            blocks = engine.stats.blocks
            assert wait_for(lambda: engine.stats.blocks > blocks + 50, 5)  # the audio plays on
            browser.get(panel.url.split("?")[0])  # the panel's own page without the token
            assert "missing or wrong token" in browser.find_element("tag name", "body").text
    finally:
        site.shutdown()
        backend.close()
        engine.close()


def test_panel_shows_listeners_switches_patches_and_saves_a_screenshot(browser, tmp_path):
    """genie_listen: the beat, pitch and chord listeners on a click track with a C major triad; then the
    patch list switches to genie and PANIC answers."""
    from selenium.webdriver.support.select import Select

    x, _ = click_track([(0.0, 120.0)], 8.0)
    t = np.arange(x.shape[0]) / SR
    x = x + 0.08 * sum(np.sin(2 * np.pi * hz * t) for hz in (261.63, 329.63, 392.0)).astype(np.float32)
    wav = tmp_path / "band.wav"
    write_wav(wav, x[None, :], SR)
    engine = Engine(load_patch("genie_listen"), sample_rate=SR, block=128)
    engine.input_file = FileInput(wav, SR, 1, engine.block, loop=True)
    backend = NullBackend(engine, record=False)
    try:
        with panel_open(browser, engine, backend, QUIET):
            for box in ("#genie", "#beat-box", "#pitch-box", "#chords-box"):
                element(browser, box)
            assert text_of(browser, "patch-list").count(":") == 4  # the [set]: four patches
            assert wait_for(lambda: text_of(browser, "chord") == "C:maj", 20), text_of(browser, "chord")
            assert wait_for(lambda: int(text_of(browser, "beats-heard")) >= 2, 20)
            press(browser, element(browser, '.genie-button[data-button="2"]'), 0.8, hold_s=0.6)
            time.sleep(0.5)
            shot = tmp_path / "panel.png"
            assert browser.save_screenshot(str(shot))
            Select(element(browser, "#patch-list")).select_by_value("genie")
            element(browser, "#patch-switch").click()  # the reload path: built off the audio thread, crossfaded
            assert wait_for(lambda: engine.patch.name == "genie" and engine.stats.swaps == 1, 20)
            assert wait_for(lambda: text_of(browser, "patch-name") == "genie", 5)
            assert wait_for(lambda: not browser.find_element("id", "listen").is_displayed(), 5)  # no listeners now
            assert element(browser, "#genie").is_displayed() and element(browser, "#param-piano-cutoff")
            element(browser, "#panic").click()
            assert wait_for(lambda: "panic: all notes off" in text_of(browser, "messages"), 5)
    finally:
        backend.close()
        engine.close()
    data = Path(shot).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
