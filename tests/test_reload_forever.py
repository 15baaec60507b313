"""Reload forever: 200 patch swaps while playing, each crossfaded, none leaking.

The audio runs on its own thread at the real-time pace, as a backend would,
with a sustained sine on the input through a pyo rack; the swaps go through the
control layer's own reload path, and retired graphs are closed by its out thread.
"""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from cadenza.engine.control import ControlLayer, ControlOptions
from cadenza.engine.engine import Engine
from cadenza.engine.patch import load_patch

RACK_PATCH = """
[patch]
description = "a sine through a pyo rack"
[audio]
inputs = 1
[[node]]
id = "room"
type = "pyo_rack"
input = "adc"
chain = [{ effect = "ButHP", freq = 20.0 }]
[osc]
listen = "127.0.0.1:0"
send = []
"""
SYNTH_PATCH = """
[patch]
description = "one synth, no effects"
[audio]
inputs = 1
[[node]]
id = "piano"
type = "synth"
[osc]
listen = "127.0.0.1:0"
send = []
"""
RELOADS = 200
SINE_HZ, SINE_AMP = 440.0, 0.5


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class SinePlayer(threading.Thread):
    """Feeds a sine block by block at the real-time pace and keeps every output block."""

    def __init__(self, engine: Engine):
        super().__init__(daemon=True)
        self.engine = engine
        self.out: list[np.ndarray] = []
        self.running = True

    def run(self) -> None:
        engine = self.engine
        block, rate = engine.block, engine.sample_rate
        t = np.arange(block) / rate
        adc = np.zeros((1, block), np.float32)
        next_at = time.monotonic()
        n = 0
        while self.running:
            adc[0] = SINE_AMP * np.sin(2 * np.pi * SINE_HZ * (t + n * block / rate))
            self.out.append(engine.process(adc).copy())
            n += 1
            next_at += engine.period_s
            time.sleep(max(0.0, next_at - time.monotonic()))


@pytest.mark.parametrize("name,text", [("rack", RACK_PATCH), ("synth", SYNTH_PATCH)])
def test_200_reloads_while_playing_all_succeed_without_leaks_or_clicks(tmp_path, name, text):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    engine = Engine(load_patch(path))
    layer = ControlLayer(engine, None, ControlOptions(osc=False, midi=False))
    player = SinePlayer(engine)
    layer.start()
    player.start()
    try:
        time.sleep(0.3)
        assert layer.reload_now(None)  # the first build loads what every later one reuses
        time.sleep(0.1)
        gc.collect()
        rss_before = rss_bytes()
        for _ in range(RELOADS):
            assert layer.reload_now(None)
        time.sleep(0.3)
        gc.collect()
        growth = rss_bytes() - rss_before
    finally:
        player.running = False
        player.join(5)
        layer.stop()
        engine.close()
    assert layer.reloads_done == RELOADS + 1 and not layer.log.counts
    assert engine.stats.swaps == RELOADS + 1
    print(f"{name}: RSS grew {growth / 2**20:.2f} MiB over {RELOADS} reloads")
    assert growth < 10 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB over {RELOADS} reloads"
    if name != "rack":
        return
    # no click: after the filter settles, no sample-to-sample step beyond 1.5× the steady sine's
    # (measured from 0.1 to 0.25 s, before the first reload at 0.3 s)
    out = np.concatenate(player.out, axis=1)[0]
    steady = np.abs(np.diff(out[4800:12000])).max()
    assert 0.9 * SINE_AMP * 2 * np.pi * SINE_HZ / engine.sample_rate < steady  # the sine is really there
    steps = np.abs(np.diff(out[4800:]))
    print(f"largest step {steps.max():.4f} over {RELOADS} swaps, steady sine's {steady:.4f}")
    assert steps.max() <= 1.5 * steady, f"largest step {steps.max():.4f}, steady sine's {steady:.4f}"


def test_a_swap_crossfades_with_equal_power_within_20_ms(tmp_path):
    """Old and new graph play the same sine: equal power peaks at √2 mid-fade, then unity, all within 20 ms."""
    path = tmp_path / "pass.toml"
    path.write_text(RACK_PATCH.replace('[{ effect = "ButHP", freq = 20.0 }]', "[]"))
    engine = Engine(load_patch(path))
    block, rate = engine.block, engine.sample_rate
    sine = (SINE_AMP * 0.5 * np.sin(2 * np.pi * SINE_HZ * np.arange(block * 80) / rate)).astype(np.float32)
    try:
        out = [engine.process(sine[None, b * block:(b + 1) * block]).copy() for b in range(40)]
        engine.swap(engine.patch, engine.build_graph(engine.patch))
        out += [engine.process(sine[None, b * block:(b + 1) * block]).copy() for b in range(40, 80)]
        retired = engine.retired()
    finally:
        engine.close()
    peak = np.array([np.abs(b[0]).max() for b in out])
    steady = peak[20:40].mean()
    fade = np.flatnonzero(np.abs(peak / steady - 1.0) > 0.02)
    assert fade.min() == 40 and (fade.max() - 40 + 1) * block <= 0.02 * rate  # ≤ 20 ms
    assert 1.38 < peak.max() / steady < 1.43  # cos + sin of in-phase signals: √2, not 1 (linear)
    assert np.allclose(peak[60:] / steady, 1.0, atol=0.02) and len(retired) == 1
