"""``cadenza genie BUTTONS.csv [--json]``: the Piano Genie decoder as a command.

BUTTONS.csv has rows ``time_s, button (0-7), velocity`` (velocity 0 releases),
with or without a header line. Each press prints ``time, button, pitch`` (MIDI),
decoded exactly as the live node does (same silence reset, same key choice).
Greedy by default; ``--temperature T`` samples with the fixed ``--seed``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from cadenza.engine.cli import UserError

SAMPLE_RATE = 48000
MAX_TIME_S = 1e6  # latest press time accepted, s (about 11 days; rules out inf and nan)


def read_buttons(path: Path) -> list[tuple[float, int, int]]:
    """(time s, button, velocity) rows sorted by time; a first line that is not numbers is a header."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with path.open(newline="") as f:
            rows = [r for r in (parse_row(path, n, row) for n, row in enumerate(csv.reader(f), 1)) if r]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a text CSV file ({exc})") from None
    rows.sort(key=lambda r: r[0])
    return rows


def parse_row(path: Path, line_no: int, row: list[str]) -> tuple[float, int, int] | None:
    """One CSV row as (time s, button, velocity); None for a blank, comment or header line."""
    cells = [c.strip() for c in row]
    if not cells or not any(cells) or cells[0].startswith("#"):
        return None
    try:
        time_s, button = float(cells[0]), int(cells[1])
        velocity = int(cells[2]) if len(cells) > 2 and cells[2] else 100
    except (ValueError, IndexError):
        if line_no == 1:
            return None  # header
        raise UserError(f"{path}:{line_no}: expected 'time_s, button, velocity', found {row!r}") from None
    if not 0 <= button <= 7:
        raise UserError(f"{path}:{line_no}: button {button} is outside 0..7")
    if not 0 <= velocity <= 127 or not 0 <= time_s < MAX_TIME_S:
        raise UserError(f"{path}:{line_no}: velocity must be 0..127 and time 0..{MAX_TIME_S:g} s, found {row!r}")
    return time_s, button, velocity


def decode(rows, weights: str = "", temperature: float = 0.0, seed: int = 0, key: str = "none",
           scale: str = "major", lowest: int = 21, highest: int = 108,
           reset_after: float = 4.0) -> list[dict]:
    """Run the presses through a :class:`GenieNode`; one dict (time, button, pitch) per press."""
    from cadenza.engine.node import Context
    from cadenza.instruments.generators.genie import GenieNode

    node = GenieNode("genie", weights=weights, seed=seed, key=key, scale=scale, reset_after=reset_after,
                     temperature=temperature, lowest=float(lowest), highest=float(highest))
    node.open(Context(SAMPLE_RATE, 128))
    notes = []
    for time_s, button, velocity in rows:
        _, on = node.handle(round(time_s * SAMPLE_RATE), button, velocity)
        if on >= 0:
            notes.append({"time": time_s, "button": button, "pitch": on})
    return notes


def add_arguments(parser) -> None:
    from cadenza.instruments.generators.genie import NOTE_NAMES, SCALES

    parser.add_argument("buttons", type=Path, help="CSV of time_s, button 0-7, velocity (0 releases)")
    parser.add_argument("--json", action="store_true", help='print {"notes": [{"time", "button", "pitch"}]}')
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed when --temperature > 0")
    parser.add_argument("--weights", default="", help="weights file (default: models/genie/genie.pt)")
    parser.add_argument("--key", default="none", choices=("none",) + NOTE_NAMES, help="restrict to a key")
    parser.add_argument("--scale", default="major", choices=tuple(SCALES), help="scale of --key")
    parser.add_argument("--lowest", type=int, default=21, help="lowest MIDI pitch")
    parser.add_argument("--highest", type=int, default=108, help="highest MIDI pitch")
    parser.add_argument("--reset-after", type=float, default=4.0, help="silence (s) that starts a new phrase")


def run(args) -> int:
    if not 0.0 <= args.temperature <= 2.0:
        raise UserError(f"--temperature must be in 0..2, found {args.temperature}")
    if not 21 <= args.lowest <= args.highest <= 108:
        raise UserError(f"--lowest/--highest must satisfy 21 <= lowest <= highest <= 108")
    notes = decode(read_buttons(args.buttons), args.weights, args.temperature, args.seed, args.key,
                   args.scale, args.lowest, args.highest, args.reset_after)
    if args.json:
        json.dump({"notes": notes}, sys.stdout)
        print()
    else:
        print("time,button,pitch")
        for n in notes:
            print(f"{n['time']:.4f},{n['button']},{n['pitch']}")
    return 0
