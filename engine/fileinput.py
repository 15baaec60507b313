"""A sound file as the live audio input: ``cadenza play PATCH --input FILE.wav [--loop]``.

The whole file is read (and resampled to the engine's rate) before the audio
starts; on the audio thread :meth:`FileInput.next_block` only copies frames
into one preallocated block, so it is real-time safe on every backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cadenza.engine.audio_io import AudioFileError, read_audio


class FileInput:
    """Plays ``path`` into ``channels`` inputs, ``block`` frames at a time, once or looping.

    File channel c feeds input c; a mono file feeds every input; channels past
    ``channels`` are left out. After the last frame it gives silence, or starts
    again from the first frame when ``loop``.
    """

    def __init__(self, path: str | Path, sample_rate: int, channels: int, block: int, loop: bool = False):
        audio = read_audio(path, sample_rate)
        if audio.shape[1] == 0:
            raise AudioFileError(f"{path}: no audio frames, allowed a sound file with some")
        self.audio = np.zeros((channels, audio.shape[1]), np.float32)
        if audio.shape[0] == 1:
            self.audio[:] = audio[0]
        else:
            shared = min(channels, audio.shape[0])
            self.audio[:shared] = audio[:shared]
        self.sample_rate = sample_rate
        self.loop = loop
        self.position = 0  # the next frame to play
        self._block = np.zeros((channels, block), np.float32)

    @property
    def seconds(self) -> float:
        """The file's length, s."""
        return self.audio.shape[1] / self.sample_rate

    def next_block(self) -> np.ndarray:
        """The next block of input (channels, block frames); the same array every call."""
        out, audio = self._block, self.audio
        frames, length = out.shape[1], audio.shape[1]
        done = 0
        while done < frames:
            if self.position >= length:
                if not self.loop:
                    out[:, done:] = 0.0
                    break
                self.position = 0
            n = min(frames - done, length - self.position)
            out[:, done:done + n] = audio[:, self.position:self.position + n]
            done += n
            self.position += n
        return out
