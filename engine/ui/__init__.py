"""The browser panel (``cadenza play --ui``): an aiohttp server, its requests and snapshots, and
the plain HTML/JS page in ``static/`` that plays Genie, shows meters, beat, pitch and chords, moves
every param, learns MIDI CCs and switches patches."""
