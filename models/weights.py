"""Model weights on disk, each beside a recorded sha256, so a corrupt file is named, not loaded.

:func:`save_weights` writes ``name.pt`` and ``name.pt.sha256`` in ``sha256sum``
format (``cd models/genie && sha256sum -c genie.pt.sha256`` checks one by
hand). :func:`load_weights` checks the digest before ``torch.load(...,
weights_only=True)``; every way it can fail is a one-line :class:`ModelError`
naming the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from contextlib import contextmanager
from pathlib import Path

from cadenza.engine.errors import ModelError

_SHA_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)\n?")


def sha256_path(path: str | Path) -> Path:
    """Where the digest of the weights file ``path`` is recorded: ``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(obj, path: str | Path) -> None:
    """``torch.save`` ``obj`` to ``path``, then record its sha256 beside it (``<path>.sha256``).

    Each file is written under a temporary name and renamed into place, so an
    interrupted save never leaves a half-written file; if it stops between the
    two renames, the stale digest makes :func:`load_weights` refuse the file.
    """
    import torch

    path = Path(path)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        torch.save(obj, part)
        line = f"{file_sha256(part)}  {path.name}\n"
        os.replace(part, path)
        _write_text_atomically(sha256_path(path), line)
    finally:
        if part.exists():
            part.unlink()


def _write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` under a temporary name, then rename it to ``path``."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    part.write_text(text)
    os.replace(part, path)


def recorded_sha256(path: str | Path) -> str:
    """The digest recorded for ``path`` in ``<path>.sha256``; ModelError if it is missing or malformed."""
    sha_file = sha256_path(path)
    try:
        text = sha_file.read_text()
    except FileNotFoundError:
        raise ModelError(f"{path}: no recorded sha256 ({sha_file.name} is missing); "
                         "retrain it, or restore both files") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{sha_file}: cannot read ({exc})") from None
    match = _SHA_LINE.fullmatch(text)
    if match is None or match.group(2) != Path(path).name:
        raise ModelError(f"{sha_file}: expected one line '<sha256 hex>  {Path(path).name}' "
                         "(sha256sum format)")
    return match.group(1)


def load_weights(path: str | Path, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` after checking the file against its recorded sha256."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model weights not found")
    expected = recorded_sha256(path)
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model weights ({exc})") from None
    if actual != expected:
        raise ModelError(f"{path}: does not match its recorded sha256 (corrupt, truncated or replaced); "
                         "retrain or restore it")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types here (pickle, zip, RuntimeError, ...)
        raise ModelError(f"{path}: cannot load model weights ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line, less a trailing colon (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(":") if text else type(exc).__name__


@contextmanager
def reading(path: str | Path, what: str):
    """Turn weights that load but do not fit ``what`` (missing keys, wrong shapes) into a ModelError."""
    try:
        yield
    except KeyError as exc:
        raise ModelError(f"{path}: not {what} (no {exc.args[0]!r} in it)") from None
    except (IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise ModelError(f"{path}: not {what} ({first_line(exc)})") from None


def save_model(model, path: str | Path, **extra) -> None:
    """Save a model with a ``config`` (``to_dict()``): its config, state dict and plain-data metadata
    ``extra``, weights_only-loadable, with its sha256 (:func:`save_weights`)."""
    save_weights({"config": model.config.to_dict(), "state_dict": model.state_dict(), "meta": extra}, path)


def load_model(path: str | Path, make, what: str, device="cpu"):
    """Load what :func:`save_model` wrote (sha256-checked, weights_only): ``make(config dict)`` builds the
    empty model; weights that do not fit it are a ModelError naming ``what``. Returns (model in eval mode
    on ``device``, meta)."""
    blob = load_weights(path, device)
    with reading(path, what):
        model = make(blob["config"])
        model.load_state_dict(blob["state_dict"])
        meta = blob.get("meta", {})
    return model.to(device).eval(), meta

