"""The ``portaudio`` backend (sounddevice): macOS, Windows, plain ALSA, or JACK through PortAudio.

A callback stream opened with ``blocksize=0`` — the host picks its buffer
size, which may vary per call — while the engine runs its own fixed block
inside: the callback takes output from the last engine block and runs the
next one when it is used up, so any host size works at the cost of up to
one engine block of buffering. MIDI for this backend comes from the control
layer's python-rtmidi thread, stamped on arrival plus the patch's scheduling
delay. Import sounddevice only when this backend is used: it lists the host
APIs once, at import.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from cadenza.engine.backends import BackendError
from cadenza.engine.backends.live import LiveBackend, Recorder, prime, wait
from cadenza.engine.engine import Engine


def _sd():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise BackendError(f"backend 'portaudio' needs sounddevice and libportaudio ({exc})") from None
    return sounddevice


def find_device(query: str | int | None, kind: str = "output") -> int | None:
    """Device index from an index or a name substring (case-insensitive); None = the default."""
    sd = _sd()
    if query is None or query == "":
        return None
    if isinstance(query, int) or str(query).isdigit():
        return int(query)
    devices = sd.query_devices()
    channels = "max_output_channels" if kind == "output" else "max_input_channels"
    for i, dev in enumerate(devices):
        if str(query).lower() in dev["name"].lower() and dev[channels] > 0:
            return i
    names = ", ".join(d["name"] for d in devices if d[channels] > 0) or "none"
    raise BackendError(f"no {kind} device matches {query!r} (devices: {names})")


class PortAudioBackend(LiveBackend):
    """Plays ``engine`` on a PortAudio device; ``device``: index or name substring."""

    name = "portaudio"
    midi_ports = False

    @staticmethod
    def available() -> bool:
        """True when PortAudio has an output device."""
        try:
            sd = _sd()
            return any(d["max_output_channels"] > 0 for d in sd.query_devices())
        except Exception:
            return False

    def __init__(self, engine: Engine, device: str | int | None = None, record: bool = True,
                 inputs: bool = True):
        sd = _sd()
        self.engine = engine
        self.device = find_device(device)
        info = sd.query_devices(self.device, "output") if self.device is not None else sd.query_devices(kind="output")
        n_in_engine = engine.graph.adc.shape[0]
        self.n_in = min(n_in_engine, int(info.get("max_input_channels", 0))) if inputs else 0
        self.recorder = Recorder() if record else None
        self._block_out = np.zeros((2, engine.block), np.float32)
        self._pos = engine.block  # read position in the current engine block (block = used up)
        self._adc = np.zeros((n_in_engine, engine.block), np.float32)  # input of the next engine block
        self._adc_next = np.zeros_like(self._adc)  # filled at the positions the output is read from
        self._stop = threading.Event()
        self.dead: str | None = None
        try:
            kwargs = dict(samplerate=engine.sample_rate, blocksize=0, dtype="float32",
                          callback=self._callback, finished_callback=self._finished)
            if self.n_in > 0:
                self.stream = sd.Stream(device=(self.device, self.device), channels=(self.n_in, 2), **kwargs)
            else:
                self.stream = sd.OutputStream(device=self.device, channels=2, **kwargs)
        except Exception as exc:  # PortAudioError, ValueError for unsupported settings
            raise BackendError(f"portaudio: cannot open {info['name']!r} at {engine.sample_rate} Hz ({exc})") from None
        self.device_name = info["name"]
        if engine.scheduling_delay == 0:
            # MIDI and OSC reach this backend on control threads, stamped on arrival: a fixed delay of
            # the host's output latency plus one engine block takes their jitter out (a patch may set its own)
            latency_s = self.stream.latency[-1] if isinstance(self.stream.latency, tuple) else self.stream.latency
            engine.scheduling_delay = engine.block + round(latency_s * engine.sample_rate)

    def _callback(self, indata, outdata, frames, time_info, status) -> None:
        try:
            self._fill(indata, outdata, frames, status)
        except Exception as exc:  # sounddevice would end the stream: this buffer is silent, counted
            self.engine.faults.record("portaudio callback", exc)
            outdata.fill(0.0)

    def _fill(self, indata, outdata, frames, status) -> None:
        engine = self.engine
        block = engine.block
        if status.output_underflow or status.input_overflow:
            engine.stats.xruns += 1
        done = 0
        while done < frames:
            if self._pos == block:  # need a new engine block
                out = engine.process(self._adc if self.n_in else None, self._block_out)
                if self.recorder is not None:
                    self.recorder.write(out)
                self._pos = 0
            n = min(frames - done, block - self._pos)
            outdata[done:done + n] = self._block_out[:, self._pos:self._pos + n].T
            if self.n_in:  # input for the next engine block: one block of delay
                self._adc_next[:self.n_in, self._pos:self._pos + n] = indata[done:done + n, :self.n_in].T
            self._pos += n
            done += n
            if self._pos == block and self.n_in:
                self._adc, self._adc_next = self._adc_next, self._adc

    def _finished(self) -> None:
        if not self._stop.is_set():
            self.dead = "the audio device stopped"
        self._stop.set()

    def run(self, seconds: float | None = None, on_tick=None, tick_s: float = 0.5) -> None:
        """Play until ``seconds`` pass, ``stop()``, Ctrl-C or the device stops."""
        self._stop.clear()
        if self.recorder is not None:
            self.recorder.start()
        prime(self.engine)
        self.stream.start()
        try:
            wait(self._stop, seconds, on_tick, tick_s)
        finally:
            self._stop.set()
            if self.dead is None:
                self.stream.stop()
            if self.recorder is not None:
                self.recorder.stop()

    def close(self) -> None:
        self.stream.close()
