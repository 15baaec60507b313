"""music21's corpus, as the symbolic models read it: which files, and parsing them in a process pool.

Piano Genie and the continuation model both learn from the Bach chorales and
Essen folk songs that music21's wheel ships; each turns a file into its own
rows (``parse_job``), and :func:`parse_files` runs those jobs in worker
processes with a tqdm bar, keeping the files' order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def corpus_root() -> Path:
    """The folder of music21's bundled corpus."""
    from music21 import corpus

    return Path(corpus.__file__).parent


def bach_files() -> list[Path]:
    """Every Bach score in the corpus (MusicXML, Humdrum), sorted."""
    from music21 import corpus

    return sorted(p for p in corpus.getComposer("bach") if p.suffix in (".mxl", ".krn", ".xml"))


def parse_files(parse_job: Callable[[tuple], list], jobs: list[tuple], workers: int, progress: bool = True) -> list:
    """``parse_job`` over ``jobs`` in ``workers`` processes; the rows each returns, concatenated in job order."""
    from multiprocessing import Pool

    from tqdm import tqdm

    rows: list = []
    with Pool(workers) as pool:
        for found in tqdm(pool.imap(parse_job, jobs), total=len(jobs), desc="parse music21 corpus",
                          disable=not progress):
            rows.extend(found)
    return rows
