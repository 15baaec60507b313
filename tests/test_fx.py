import numpy as np
import pytest

from cadenza.engine.backends.offline import OfflineBackend
from tests.helpers import engine_from_toml

SR = 48000


def _rack(chain: str, signal: np.ndarray, block=128) -> np.ndarray:
    eng = engine_from_toml(f"""
[[node]]
id = "fx"
type = "pyo_rack"
input = "adc"
chain = [{chain}]
""", block=block)
    try:
        return OfflineBackend(eng).render(signal.shape[1], signal)
    finally:
        eng.close()


def _impulse(n=SR, at=1000, amp=0.5):
    x = np.zeros((2, n), np.float32)
    x[:, at] = amp
    return x


def _tone(freq, amp, n=SR):
    t = np.arange(n) / SR
    return np.tile(amp * np.sin(2 * np.pi * freq * t), (2, 1)).astype(np.float32)


@pytest.mark.parametrize("block", [64, 128])
def test_reverb_leaves_a_tail(block):
    y = _rack('{ effect = "Freeverb", size = 0.9, bal = 1.0 }', _impulse(), block)
    assert np.abs(y[:, 1000 + 4800: 1000 + 9600]).max() > 1e-3  # 100-200 ms after the click


def test_delay_repeats_at_its_delay_time():
    y = _rack('{ effect = "Delay", delay = 0.1, feedback = 0.0 }', _impulse())
    echo = np.argmax(np.abs(y[0, 2000:])) + 2000
    assert abs(echo - (1000 + 4800)) <= 2


def test_chorus_changes_the_signal():
    x = _tone(440, 0.3)
    y = _rack('{ effect = "Chorus", depth = 2.0, bal = 0.5 }', x)
    assert np.abs(y[:, 4800:] - x[:, 4800:]).mean() > 0.01


def test_eq_boost_raises_its_band_only():
    lo, hi = _tone(200, 0.1), _tone(4000, 0.1)
    chain = '{ effect = "EQ", freq = 4000, q = 1, boost = 12.0 }'
    gain_hi = np.abs(_rack(chain, hi)[:, 9600:]).max() / 0.1
    gain_lo = np.abs(_rack(chain, lo)[:, 9600:]).max() / 0.1
    assert gain_hi > 3.0 and 0.8 < gain_lo < 1.25


def test_compressor_turns_loud_signal_down():
    x = _tone(300, 0.8)
    y = _rack('{ effect = "Compress", thresh = -30, ratio = 8, risetime = 0.005, lookahead = 0.0 }', x)
    assert np.abs(y[:, 9600:]).max() < 0.5 * 0.8


def test_wet_param_bypasses_the_chain():
    x = _tone(440, 0.3)
    eng = engine_from_toml("""
[[node]]
id = "fx"
type = "pyo_rack"
input = "adc"
wet = 0.0
chain = [{ effect = "Disto", drive = 0.9 }]
""")
    try:
        y = OfflineBackend(eng).render(x.shape[1], x)
    finally:
        eng.close()
    assert np.allclose(y[:, 4800:], x[:, 4800:], atol=5e-3)
