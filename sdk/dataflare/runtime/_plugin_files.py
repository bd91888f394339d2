"""Where in the plugin's own files an exception was raised, the same in both runtimes.

A plugin is one ``.py`` file or one package folder. Natively its files sit
wherever the author keeps them; inside a component they sit in the build's
stage under another name. So a location names a file relative to the plugin,
under the name the author gave it (``parse_amount.py``, ``myplugin/rules.py``),
never an absolute path: both runtimes then say the same thing.

A location and the plugin's frames cross the WIT boundary inside a
``processing-error``'s ``message``, after :data:`LOCATION_MARK` (see
``wit/plugin.wit``): a component that does not add them (an older build, a
plugin in another language) still gives a valid message without a location.
"""

from __future__ import annotations

import linecache
import os
import re
import traceback
from collections.abc import Mapping
from pathlib import PurePath

import attrs

__all__ = [
    "LOCATION_MARK",
    "PluginFiles",
    "RaisedAt",
    "join_message",
    "plugin_files_of",
    "split_message",
]

LOCATION_MARK = "\x1e"
"""Separates an error message from its location and plugin frames on the WIT boundary
(the ASCII record separator: no exception message a plugin writes by hand holds it)."""

_MAX_FRAMES = 20
_MAX_LINE = 200
_LOCATION = re.compile(r"[^\n]+:\d+")


@attrs.frozen
class RaisedAt:
    """Where an exception was raised in the plugin: ``file:line`` and the plugin's frames.

    ``traceback`` holds the plugin's own frames only (outermost first), as
    Python prints them, with file names relative to the plugin.
    """

    location: str
    traceback: str


@attrs.frozen
class PluginFiles:
    """A plugin's own files as the running Python sees them, and the name shown for them.

    ``path`` is the plugin's ``.py`` file, or its package folder when
    ``package``; ``label`` is how messages name it (the file or folder name the
    author gave, which the component's staged copy does not have).
    """

    path: str
    label: str
    package: bool

    def relative(self, filename: str) -> str | None:
        """``filename`` as messages name it, or None when it is not one of the plugin's files."""
        normal = os.path.normpath(filename)
        if not self.package:
            return self.label if normal == self.path else None
        prefix = self.path + os.sep
        if not normal.startswith(prefix):
            return None
        inside = PurePath(normal[len(prefix) :]).as_posix()
        return f"{self.label}/{inside}"

    def raised_at(self, exc: BaseException) -> RaisedAt | None:
        """The innermost frame of ``exc``'s traceback inside the plugin, and the plugin's frames.

        None when no frame is the plugin's (the SDK refused what it returned).
        """
        frames = []
        for frame in traceback.extract_tb(exc.__traceback__):
            shown = self.relative(frame.filename)
            if shown is not None:
                frames.append((shown, frame.lineno, frame.name, frame.line))
        if not frames:
            return None
        shown, line, _, _ = frames[-1]
        lines = [
            f'  File "{name}", line {number}, in {function}'
            + (f"\n    {text.strip()[:_MAX_LINE]}" if text and text.strip() else "")
            for name, number, function, text in frames[-_MAX_FRAMES:]
        ]
        return RaisedAt(f"{shown}:{line}", "\n".join(lines))

    def keep_source_lines(self) -> None:
        """Load the plugin's source lines into :mod:`linecache` for good.

        A whole component's sandbox mounts no folder: its tracebacks can show the
        plugin's source lines only if they were read at build time. Entries
        without a modification time are never checked against the disk.
        """
        files = (
            [
                os.path.join(folder, name)
                for folder, _, names in os.walk(self.path)
                for name in names
                if name.endswith(".py")
            ]
            if self.package
            else [self.path]
        )
        for file in files:
            lines = linecache.getlines(file)
            if lines:
                linecache.cache[file] = (len("".join(lines)), None, lines, file)


def plugin_files_of(namespace: Mapping[str, object], origin: str) -> PluginFiles | None:
    """The plugin's own files, from the namespace of the module that defines it.

    A package's module has ``__path__``; any module has ``__file__``. A bare
    namespace (a function handed over directly) has neither: the plugin
    function's own file then stands for it.
    """
    file = namespace.get("__file__")
    package = "__path__" in namespace
    if not isinstance(file, str):
        functions = [value for value in namespace.values() if hasattr(value, "__code__")]
        if len(functions) != 1:
            return None
        file = functions[0].__code__.co_filename
        package = False
    path = os.path.normpath(os.path.abspath(file))
    if package:
        path = os.path.dirname(path)
    named = PurePath(origin)
    # The origin is the author's path (natively) or the name the build kept (in a
    # component); an importable module's name ("pkg.plugin") is not a path.
    path_like = "/" in origin or os.sep in origin or named.suffix in ("", ".py")
    label = named.name if path_like and named.name else os.path.basename(path)
    if not package and not label.endswith(".py"):
        label = os.path.basename(path)
    return PluginFiles(path, label, package)


def join_message(message: str, raised_at: RaisedAt | None) -> str:
    """``message`` with the location and frames after :data:`LOCATION_MARK` (the WIT form)."""
    if raised_at is None:
        return message
    return f"{message}{LOCATION_MARK}{raised_at.location}{LOCATION_MARK}{raised_at.traceback}"


def split_message(text: str) -> tuple[str, str | None, str | None]:
    """The message, location and plugin frames :func:`join_message` put in ``text``.

    A text without a well-formed location is all message; frames cut short by a
    bound on the whole text are kept as far as they go.

    >>> split_message(join_message("bad", RaisedAt("p.py:3", '  File "p.py", line 3, in p')))
    ('bad', 'p.py:3', '  File "p.py", line 3, in p')
    >>> split_message("bad")
    ('bad', None, None)
    """
    message, mark, rest = text.partition(LOCATION_MARK)
    location, _, frames = rest.partition(LOCATION_MARK)
    if not mark or not _LOCATION.fullmatch(location):
        return text, None, None
    return message, location, frames or None
