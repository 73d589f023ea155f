"""A small name -> factory registry: duplicate names are errors, unknown names list the known ones."""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message names it, the nearest registered names and all
    of them (a ``KeyError``, so callers that catch those still do)."""

    def __init__(self, kind: str, name: object, known: list[str]) -> None:
        from mcmi.config import did_you_mean

        self.kind, self.name, self.known = kind, name, known
        self.message = f"unknown {kind} {name!r}{did_you_mean(name, known)}; known: {', '.join(known) or '(none)'}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return self.message


class Registry(Generic[T]):
    """Maps names to factories (classes or functions).

    ``@registry.register("name")`` adds an entry; registering a name twice raises, so two
    modules can never silently shadow each other. ``registry.get("nmae")`` raises an
    :class:`UnknownNameError` (a ``KeyError``) naming the nearest and every known name.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def add(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, sorted(self._entries)) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
