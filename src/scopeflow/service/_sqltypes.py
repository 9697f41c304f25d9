"""Column types shared by the models: UTC timestamps and string-valued enums."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Dialect, String
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """A timestamp as the API shows it (ISO 8601), or None."""
    return None if value is None else value.isoformat()


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no time zones: values are stored there as naive UTC (so that they still compare
    in SQL). Naive datetimes are refused when writing, on every database.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC (naive on SQLite); refuse naive values."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamp without a time zone: {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware datetime in UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StrEnumType(TypeDecorator[Any]):
    """A :class:`~enum.StrEnum` stored as its value in a VARCHAR column.

    Parameters
    ----------
    enum
        The enum class; values read back are its members.
    length
        Length of the VARCHAR column.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int = 16) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """Store the member's value; a string that is not a member's value is refused."""
        return None if value is None else str(self.enum(value).value)

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        """Return the enum member."""
        return None if value is None else self.enum(value)
