"""The one vocabulary for validating arguments: every message names the parameter, the value and what is allowed.

Functions check a value and return it (``batch_size = checks.integer("batch_size", batch_size, low=1)``).
:class:`Rule` objects say the same thing as data, so that a notebook's parameters can be declared once and
checked by :class:`helpers.results.Run` before any work (``EPOCHS=checks.Integer(low=1)``).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["integer", "number", "choice", "flag", "text", "nonempty", "seeds", "Rule", "Integer", "Number", "Choice",
           "Flag", "Text", "ListOf", "describe_range"]


def describe_range(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    """``">= 1"``, ``"in (0, 1]"``, ``"<= 5"`` or ``""`` (no bound)."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def _fail(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{name} must be {allowed}; got {value!r}")


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int (bools are refused) in ``[low, high]``; a ``ValueError`` naming ``name`` otherwise."""
    allowed = " ".join(filter(None, ["an int", describe_range(low, high)]))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(name, value, allowed)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _fail(name, value, allowed)
    return int(value)


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the stated range (ints accepted, bools and NaN refused)."""
    allowed = " ".join(filter(None, ["a number", describe_range(low, high, low_open, high_open)]))
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise _fail(name, value, allowed)
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise _fail(name, value, allowed)
    if high is not None and (v > high or (high_open and v == high)):
        raise _fail(name, value, allowed)
    return v


def choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed`` (compared with ``==``; strings case-sensitively)."""
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise _fail(name, value, "one of " + ", ".join(repr(a) for a in allowed))
    return value


def flag(name: str, value: Any) -> bool:
    """``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise _fail(name, value, "True or False")
    return value


def text(name: str, value: Any) -> str:
    """``value`` if it is a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, value, "a non-empty string")
    return value


def nonempty(name: str, size: int) -> int:
    """Refuse empty data: ``size`` (a number of examples) must be >= 1."""
    if size < 1:
        raise ValueError(f"{name} is empty: it must hold at least one example")
    return size


def seeds(values: Any, name: str = "seeds") -> list[int]:
    """The seeds of a replicated run as a list of ints >= 0; a ``ValueError`` naming ``name`` when it is empty or an
    item is not a seed."""
    out = [integer("seed", s, low=0) for s in values]
    if not out:
        raise ValueError(f"{name} must list at least one seed")
    return out


# --------------------------------------------------------------------------------------------
# Rules: the same checks as data, for a notebook's declared parameters


@dataclass(frozen=True)
class Rule:
    """A check of one parameter: ``rule(name, value)`` returns the value or raises a ``ValueError`` that names
    ``name``. ``optional=True`` also accepts ``None`` (for a table entry meaning "all" or "skip")."""

    check: Callable[[str, Any], Any]
    allowed: str
    type_name: str
    optional: bool = False

    def __call__(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        try:
            return self.check(name, value)
        except ValueError:
            raise _fail(name, value, self.describe()) from None

    def describe(self) -> str:
        return self.allowed + (" (or None)" if self.optional else "")


def Integer(low: int | None = None, high: int | None = None, optional: bool = False) -> Rule:
    """A rule for an int parameter in ``[low, high]``."""
    return Rule(lambda n, v: integer(n, v, low, high),
                " ".join(filter(None, ["an int", describe_range(low, high)])), "int", optional)


def Number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, optional: bool = False) -> Rule:
    """A rule for a real parameter in a range."""
    return Rule(lambda n, v: number(n, v, low, high, low_open=low_open, high_open=high_open),
                " ".join(filter(None, ["a number", describe_range(low, high, low_open, high_open)])), "float",
                optional)


def Choice(allowed: Sequence[Any], optional: bool = False) -> Rule:
    """A rule for a parameter that takes one of ``allowed``."""
    allowed = tuple(allowed)
    return Rule(lambda n, v: choice(n, v, allowed), "one of " + ", ".join(repr(a) for a in allowed),
                "str" if all(isinstance(a, str) for a in allowed) else "object", optional)


def Flag(optional: bool = False) -> Rule:
    """A rule for a True/False parameter."""
    return Rule(flag, "True or False", "bool", optional)


def Text(optional: bool = False) -> Rule:
    """A rule for a free-text parameter (a path, a name checked later by the code that uses it)."""
    return Rule(text, "a non-empty string", "str", optional)


@dataclass(frozen=True)
class _ListCheck:
    item: Rule
    min_len: int = field(default=1)

    def __call__(self, name: str, value: Any) -> list:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) < self.min_len:
            raise ValueError(name)
        return [self.item(f"{name}[{i}]", v) for i, v in enumerate(value)]


def ListOf(item: Rule, min_len: int = 1, optional: bool = False) -> Rule:
    """A rule for a list (at least ``min_len`` long) whose items obey ``item``."""
    return Rule(_ListCheck(item, min_len), f"a list of at least {min_len} item(s), each {item.describe()}", "list",
                optional)
