"""Raw MIDI bytes → complete channel messages, robust to whatever a wire delivers.

Handles running status, real-time bytes (0xF8-0xFF) interleaved anywhere,
SysEx of any length (skipped), system-common messages (skipped) and garbage
(data bytes with no status, undefined status bytes), which is counted and
dropped. State persists across calls, so one parser serves one input stream.
"""

from __future__ import annotations

from cadenza.engine.events import Kind

# data bytes that follow a channel status, by its high nibble
_CHANNEL_LEN = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
# data bytes after system-common status bytes (skipped, but their data must be eaten)
_COMMON_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}
_UNDEFINED = (0xF4, 0xF5, 0xF9, 0xFD)
SYSEX, SYSEX_END = 0xF0, 0xF7


class MidiParser:
    """``feed(data)`` returns the list of (status, data1, data2) channel messages completed.

    Real-time bytes are returned too, as (byte, 0, 0), so a caller can follow
    an external Start/Stop; counters: ``garbage`` (bytes dropped), ``sysex``
    (SysEx messages skipped), ``messages``.
    """

    def __init__(self):
        self.reset()
        self.garbage = 0
        self.sysex = 0
        self.messages = 0

    def reset(self) -> None:
        """Forget any partial message (e.g. when the source goes away)."""
        self._status = 0  # running status (a channel status) or 0
        self._need = 0  # data bytes the current message still needs
        self._data = [0, 0]
        self._have = 0
        self._skip = False  # inside a system-common message whose data is skipped
        self._in_sysex = False

    def feed(self, data) -> list[tuple[int, int, int]]:
        out = []
        for byte in bytes(data):
            if byte >= 0xF8:  # real-time: does not disturb anything
                if byte in _UNDEFINED:
                    self.garbage += 1
                else:
                    out.append((byte, 0, 0))
                continue
            if self._in_sysex:
                if byte == SYSEX_END:
                    self._in_sysex = False
                    self.sysex += 1
                    continue
                if byte < 0x80:
                    continue
                self._in_sysex = False  # a status byte ends an unterminated SysEx
                self.sysex += 1
            if byte >= 0x80:
                self._start(byte)
                continue
            if self._need == 0:  # data byte with nothing to belong to
                self.garbage += 1
                continue
            self._data[self._have] = byte
            self._have += 1
            if self._have == self._need:
                if not self._skip:
                    d1 = self._data[0]
                    d2 = self._data[1] if self._need == 2 else 0
                    out.append((self._status, d1, d2))
                    self.messages += 1
                self._have = 0
                if self._skip:  # system common messages cancel running status
                    self._skip = False
                    self._need = 0
        return out

    def _start(self, byte: int) -> None:
        if self._have:  # a message cut short by a new status byte
            self.garbage += self._have
        self._have = 0
        self._skip = False
        if byte < 0xF0:
            self._status = byte
            self._need = _CHANNEL_LEN[byte & 0xF0]
            return
        self._status = 0
        self._need = 0
        if byte == SYSEX:
            self._in_sysex = True
        elif byte in _COMMON_LEN:
            self._need = _COMMON_LEN[byte]
            self._skip = self._need > 0
        elif byte != SYSEX_END:  # undefined 0xF4 / 0xF5; a stray 0xF7 is harmless
            self.garbage += 1


def event_bytes(kind: int, channel: int, a: int, b: int, value: float) -> bytes | None:
    """The MIDI message for an outbound engine event, or None for kinds MIDI does not carry."""
    ch = channel & 0x0F
    if kind == Kind.NOTE_ON:
        return bytes((0x90 | ch, a & 0x7F, b & 0x7F))
    if kind == Kind.NOTE_OFF:
        return bytes((0x80 | ch, a & 0x7F, b & 0x7F))
    if kind == Kind.CC:
        return bytes((0xB0 | ch, a & 0x7F, b & 0x7F))
    if kind == Kind.PROGRAM:
        return bytes((0xC0 | ch, a & 0x7F))
    if kind == Kind.PITCH_BEND:
        raw = min(max(int(round((value + 1.0) * 8192)), 0), 16383)
        return bytes((0xE0 | ch, raw & 0x7F, raw >> 7))
    return None
