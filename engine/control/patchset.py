"""The patch list a performance switches among: the first patch's ``[set]``, or its folder.

Names resolve only inside this list (by name or by 0-based index, the MIDI
program number): a name from the browser panel or ``/cadenza/patch`` is never
taken as a path, so no request can make the engine read a file outside it.

- ``[set] patches = ["genie", "default"]``: those names, looked up beside the
  patch file first, then in the shipped ``patches/`` folder;
- ``[set] folder = "setlist"``: every ``*.toml`` in that folder (relative to the
  patch file), sorted by name;
- no ``[set]``: every ``*.toml`` beside the playing patch, sorted by name.

Only a patch with a ``[set]`` table turns MIDI program change into a patch
switch (``program_switches``); elsewhere program change still reaches the
patch's notes node (a SoundFont voice picks its instrument with it).
"""

from __future__ import annotations

from pathlib import Path

from cadenza.engine.errors import CadenzaError
from cadenza.engine.patch import PATCH_DIR, Patch

MAX_PATCHES = 128  # a program change reaches 0..127


class PatchSetError(CadenzaError, ValueError):
    """A name or index that is not in the patch list. The message is one line."""


class PatchSet:
    """Patch names → files, fixed for the run from the patch it started with."""

    def __init__(self, patch: Patch):
        table = patch.table("set")
        here = patch.path.resolve().parent
        if table["patches"]:
            self.paths = {name: self._find(name, here) for name in table["patches"]}
        else:
            folder = (here / table["folder"]).resolve() if table["folder"] else here
            self.paths = {p.stem: p for p in sorted(folder.glob("*.toml"))[:MAX_PATCHES]}
        self.paths.setdefault(patch.name, patch.path)
        self.program_switches = bool(table["patches"] or table["folder"])

    @staticmethod
    def _find(name: str, here: Path) -> Path:
        for folder in (here, PATCH_DIR):
            if (folder / f"{name}.toml").is_file():
                return folder / f"{name}.toml"
        return here / f"{name}.toml"  # a missing file: reloading it says so in one line

    @property
    def names(self) -> list[str]:
        return list(self.paths)

    def resolve(self, which: str | int) -> Path:
        """The file of patch ``which`` (a name of the list, or its 0-based index); PatchSetError."""
        names = self.names
        if isinstance(which, int) and not isinstance(which, bool):
            if not 0 <= which < len(names):
                raise PatchSetError(f"patch index {which}: allowed 0..{len(names) - 1} ({', '.join(names)})")
            return self.paths[names[which]]
        if not isinstance(which, str) or which not in self.paths:
            raise PatchSetError(f"patch {which!r}: not in the patch list, allowed one of {', '.join(names)}")
        return self.paths[which]
