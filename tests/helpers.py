"""Small builders shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cadenza.engine.engine import Engine
from cadenza.engine.patch import parse_patch


def engine_from_toml(text: str, tmp_path: Path | None = None, **kwargs) -> Engine:
    path = (tmp_path or Path("/tmp")) / "test_patch.toml"
    return Engine(parse_patch(text, path), **kwargs)


SYNTH_ONLY = """
[patch]
description = "one synth"
[[node]]
id = "piano"
type = "synth"
wave = "saw"
attack = 0.001
[midi]
notes = { to = "piano" }
"""


def render_blocks(engine: Engine, n_blocks: int) -> np.ndarray:
    return np.concatenate([engine.process(None).copy() for _ in range(n_blocks)], axis=1)
