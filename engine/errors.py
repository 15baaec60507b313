"""The errors a user can cause and fix: each one's message is a single line naming what was wrong.

The CLI prints any :class:`CadenzaError` as ``cadenza: error: <message>`` and
exits with 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CadenzaError(Exception):
    """Something the user can fix (a file, a flag, a server). The message is one line."""


class ModelError(CadenzaError):
    """A model weights file that is missing, corrupt, or does not match its recorded sha256."""
