"""A file source's files as partitions: its one-process position split per file, and back.

Reading in one process, a glob's files are read in name order and the position
names the file being read; the files before it are done. Read in workers, each
file resumes on its own. Both forms say the same thing as long as the files
read in parallel form a prefix (all ended) then at most one partly read file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dataflare import PluginError

from ._base import Position
from ._partitions import PartitionPositions

__all__ = ["join_file_positions", "split_file_position"]


def split_file_position(files: Sequence[Path], position: Position | None) -> PartitionPositions:
    """``position`` (a file source's, already checked) as each file's."""
    names = [p.name for p in files]
    if not position:
        return PartitionPositions(dict.fromkeys(names))
    current = str(position.get("file"))
    ended = frozenset(n for n in names if n < current)
    at: dict[str, Position | None] = dict.fromkeys(names)
    if current in at:
        at[current] = position
    return PartitionPositions(at, ended)


def join_file_positions(files: Sequence[Path], positions: PartitionPositions) -> Position:
    """The one-process position saying what ``positions`` says, or a PluginError naming
    the files read in parallel that no one position covers."""
    names = [p.name for p in files]
    last_ended: Position | None = None
    for index, name in enumerate(names):
        if name in positions.ended:
            last_ended = positions.at.get(name) or last_ended
            continue
        started = positions.at.get(name)
        later = [n for n in names[index + 1 :] if n in positions.ended or positions.at.get(n)]
        if later:
            partly = [name] if started else []
            raise PluginError(
                "file source: the checkpoint holds files read in parallel by workers "
                f"({', '.join(partly + later[:3])}{'...' if len(later) > 3 else ''} read "
                f"while {name} was not finished): resume with workers reading the files "
                "again, or run with --reset"
            )
        return started or last_ended
    return last_ended
