"""How every sandbox extension is installed on moto and undone again.

An extension patches moto only while it is installed: ``undo = ext.install()`` (or
``with ext:``), and ``undo()`` restores moto. A subclass says what it patches in
``_patch``, entering each patch (``stack.enter_context(patch.object(...))``) and
registering each clean-up (``stack.callback(...)``) on the stack it is given; undo closes
that stack, so everything is undone in reverse order. An install that fails half-way
undoes what it had already done.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import Self


class Extension(ABC):
    """A change to moto that lasts from ``install()`` until the undo function it returns."""

    _undo: Callable[[], None] | None = None

    @abstractmethod
    def _patch(self, stack: ExitStack) -> None:
        """Apply the extension, leaving on ``stack`` everything that undoes it."""

    def install(self) -> Callable[[], None]:
        """Patch moto; returns the function that undoes it."""
        if self._undo is not None:
            raise RuntimeError(f"this {type(self).__name__} is already installed")
        with ExitStack() as partial:
            self._patch(partial)
            stack = partial.pop_all()

        def undo() -> None:
            stack.close()
            self._undo = None

        self._undo = undo
        return undo

    def __enter__(self) -> Self:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._undo is not None:
            self._undo()
