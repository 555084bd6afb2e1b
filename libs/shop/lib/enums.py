"""Proto enum value <-> API name: `ROLE_CUSTOMER` (proto) is `CUSTOMER` (REST, database).

Proto enum values carry their type's prefix (buf's ENUM_VALUE_PREFIX rule) and a zero value
`<PREFIX>UNSPECIFIED`; the API and the tables use the bare name. One table per enum type:

    ROLES = EnumNames(auth_pb2.Role)        # prefix "ROLE_", from ROLE_UNSPECIFIED
    ROLES.name(auth_pb2.ROLE_ADMIN)         # "ADMIN"
    ROLES.value("ADMIN")                    # auth_pb2.ROLE_ADMIN
    ROLES.optional(request.role)            # None for ROLE_UNSPECIFIED (a filter not given)
    ROLES.names                             # ("CUSTOMER", "SELLER", "ADMIN")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:  # a stub-only class (types-protobuf): the generated enums' metaclass
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

_UNSPECIFIED = "UNSPECIFIED"
_V = TypeVar("_V", bound=int)  # the enum's value type (`auth_pb2.Role.ValueType`)


class EnumNames(Generic[_V]):
    def __init__(self, enum: _EnumTypeWrapper[_V], prefix: str | None = None) -> None:
        """`enum` is a generated enum wrapper (e.g. `orders_pb2.OrderStatus`); the prefix defaults to
        the zero value's name without UNSPECIFIED (`ORDER_STATUS_UNSPECIFIED` -> `ORDER_STATUS_`)."""
        self.enum = enum
        zero, self._zero = next((name, value) for name, value in enum.items() if value == 0)  # proto3 has one
        if prefix is None:
            if not zero.endswith(_UNSPECIFIED):
                raise ValueError(f"{zero}: give the prefix (the zero value is not <PREFIX>UNSPECIFIED)")
            prefix = zero[: -len(_UNSPECIFIED)]
        self.prefix = prefix
        self._by_value: dict[int, str] = {value: strip_prefix(name, prefix) for name, value in enum.items()}
        self._by_name = {strip_prefix(name, prefix): value for name, value in enum.items()}
        self.names = tuple(name for name, value in self._by_name.items() if value != 0)

    def name(self, value: int) -> str:
        """The API name of a value (ValueError for a value the enum does not have)."""
        try:
            return self._by_value[value]
        except KeyError:
            raise ValueError(f"{value} is not a value of {self.enum.DESCRIPTOR.full_name}") from None

    def optional(self, value: int) -> str | None:
        """The API name, or None for the zero (unspecified) value."""
        return None if value == 0 else self.name(value)

    def value(self, name: str) -> _V:
        """The proto value of an API name (ValueError for an unknown name)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"{name!r} is not a {self.enum.DESCRIPTOR.full_name}") from None

    def value_or_unspecified(self, name: str | None) -> _V:
        """The proto value of a name that may be absent (None or "" -> 0)."""
        return self.value(name) if name else self._zero


def strip_prefix(value_name: str, prefix: str) -> str:
    """`ROLE_CUSTOMER` -> `CUSTOMER` (a name without the prefix is returned as it is)."""
    return value_name.removeprefix(prefix)
