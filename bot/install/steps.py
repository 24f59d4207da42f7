"""The steps of a service install and the two executors that carry them out.

A plan is a list of plain steps (``Run``, ``MakeDir``, ``WriteFile``, ``Remove``, ``Note``);
``SystemExecutor`` does them (files written atomically, modes set before content lands) and
``DryRunExecutor`` prints them, so ``familiar service install --dry-run`` shows exactly what a
real install would do. ``bot/install/plan.py`` computes the plan.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from memory.errors import FamiliarError


class ServiceError(FamiliarError):
    """The service cannot be installed or removed as asked."""


# --- Steps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Run a command; a non-zero exit stops the install."""

    argv: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class MakeDir:
    path: Path
    mode: int
    why: str
    owner: str | None = None  # None: leave as created (root when installing)
    group: str | None = None


@dataclass(frozen=True)
class WriteFile:
    path: Path
    content: str
    mode: int
    why: str
    owner: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Remove:
    """Remove a file, or a directory tree."""

    path: Path
    why: str


@dataclass(frozen=True)
class Note:
    """Something the plan decided not to do, or a warning; nothing is carried out."""

    text: str


Step = Run | MakeDir | WriteFile | Remove | Note


# --- Executors ---------------------------------------------------------------------------------


class Executor(ABC):
    """Carries out a plan, step by step, in order."""

    def carry_out(self, steps: Sequence[Step]) -> None:
        for step in steps:
            self.apply(step)

    @abstractmethod
    def apply(self, step: Step) -> None:
        """Carry out one step, or raise ``ServiceError`` saying which one failed."""


def _owner_text(owner: str | None, group: str | None) -> str:
    if owner is None and group is None:
        return ""
    return f", owner {owner or 'root'}:{group or owner or 'root'}"


class DryRunExecutor(Executor):
    """Prints every command (as a shell line) and every file with its content; changes nothing."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def apply(self, step: Step) -> None:
        w = self.out.write
        if isinstance(step, Run):
            w(f"# {step.why}\n$ {shlex.join(step.argv)}\n\n")
        elif isinstance(step, MakeDir):
            w(
                f"# {step.why}\nmkdir {step.path} (mode {step.mode:04o}{_owner_text(step.owner, step.group)})\n\n"
            )
        elif isinstance(step, WriteFile):
            w(
                f"# {step.why}\nwrite {step.path} (mode {step.mode:04o}{_owner_text(step.owner, step.group)}):\n"
            )
            for line in step.content.splitlines():
                w(f"    {line}\n")
            w("\n")
        elif isinstance(step, Remove):
            w(f"# {step.why}\nremove {step.path}\n\n")
        else:
            w(f"# note: {step.text}\n\n")


class SystemExecutor(Executor):
    """Does it: runs the commands, writes the files (atomically), sets modes and owners."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()

    def apply(self, step: Step) -> None:
        try:
            if isinstance(step, Run):
                self._say(f"$ {shlex.join(step.argv)}")
                result = subprocess.run(step.argv, check=False)
                if result.returncode != 0:
                    raise ServiceError(
                        f"`{shlex.join(step.argv)}` failed with exit status {result.returncode} ({step.why})",
                        "read its output above, fix the cause, then run the install again (it can be repeated)",
                    )
            elif isinstance(step, MakeDir):
                self._say(f"mkdir {step.path}")
                step.path.mkdir(parents=True, exist_ok=True)
                step.path.chmod(step.mode)
                self._chown(step.path, step.owner, step.group)
            elif isinstance(step, WriteFile):
                self._say(f"write {step.path}")
                self._write(step)
            elif isinstance(step, Remove):
                self._say(f"remove {step.path}")
                if step.path.is_dir() and not step.path.is_symlink():
                    shutil.rmtree(step.path)
                else:
                    step.path.unlink(missing_ok=True)
            else:
                self._say(f"note: {step.text}")
        except OSError as exc:
            raise ServiceError(
                f"cannot {type(step).__name__.lower()} {getattr(step, 'path', '')}: {exc.strerror or exc}",
                "check the path and its permissions, then run the install again",
            ) from None

    def _write(self, step: WriteFile) -> None:
        # Write beside the target and rename, so a reader never sees half a unit file, and
        # set the mode before the content lands (a credentials README is harmless, but the
        # settings file may later hold secrets someone pastes in).
        step.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=step.path.parent, prefix=f".{step.path.name}.")
        try:
            os.fchmod(fd, step.mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(step.content)
            self._chown(Path(tmp), step.owner, step.group)
            os.replace(tmp, step.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _chown(path: Path, owner: str | None, group: str | None) -> None:
        # shutil.chown's overloads want at least one of the two; -1 leaves that one unchanged.
        if owner is not None or group is not None:
            os.chown(path, _uid(owner), _gid(group))


def _uid(name: str | None) -> int:
    import pwd

    try:
        return -1 if name is None else pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ServiceError(
            f"there is no user {name!r}", "create it first (useradd --system)"
        ) from None


def _gid(name: str | None) -> int:
    import grp

    try:
        return -1 if name is None else grp.getgrnam(name).gr_gid
    except KeyError:
        raise ServiceError(
            f"there is no group {name!r}", "create it first (groupadd --system)"
        ) from None
