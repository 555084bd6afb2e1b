"""The one validation-error collector: field problems gathered, then one `ValidationError`.

    errors = FieldErrors()
    errors.add("lastName", "must be at most 50 characters")
    errors.no_nul("reason", reason)
    errors.raise_if_any()          # ValidationError({"lastName": [...], ...}), or nothing

Field names are the REST (camelCase) names the caller sent; a prefix names a nested object
(`FieldErrors(prefix="shippingAddress")` adds "shippingAddress.city"). The error itself is
shop.lib.errors.ValidationError (400 VALIDATION_ERROR with details.fields in the gateway).
"""

from __future__ import annotations

from shop.lib.errors import ValidationError


class FieldErrors:
    def __init__(self, prefix: str = "") -> None:
        self.fields: dict[str, list[str]] = {}
        self.prefix = prefix

    def name(self, field_name: str) -> str:
        return f"{self.prefix}.{field_name}" if self.prefix else field_name

    def add(self, field_name: str, message: str) -> None:
        self.fields.setdefault(self.name(field_name), []).append(message)

    def set(self, field_name: str, message: str) -> None:
        """The field's one message (replacing any earlier one)."""
        self.fields[self.name(field_name)] = [message]

    def no_nul(self, field_name: str, value: str | None) -> None:
        """PostgreSQL text cannot hold NUL characters: refuse them as bad input, not a 500."""
        if value and "\x00" in value:
            self.add(field_name, "must not contain NUL characters")

    def no_control(self, field_name: str, value: str | None) -> None:
        """Text a person types on one line: no control characters (C0, DEL), NUL included."""
        if value and any(ch < "\x20" or ch == "\x7f" for ch in value):
            self.add(field_name, "must not contain control characters")

    def merge(self, other: FieldErrors) -> None:
        for field_name, messages in other.fields.items():
            self.fields.setdefault(field_name, []).extend(messages)

    def __bool__(self) -> bool:
        return bool(self.fields)

    def error(self, message: str = "The request is not valid.") -> ValidationError:
        return ValidationError({name: list(messages) for name, messages in self.fields.items()}, message)

    def raise_if_any(self, message: str = "The request is not valid.") -> None:
        if self.fields:
            raise self.error(message)
