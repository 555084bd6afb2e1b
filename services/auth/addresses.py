"""Use cases of a user's address book: ListAddresses, CreateAddress, UpdateAddress, DeleteAddress,
and GetAddress (for checkout, called by a service).

Each write opens its one transaction here and first locks the user's row, so one user's address
changes are serialized (exactly one default, the limit). Field rules and the default rule are in
domain.py, the queries in repository.py."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.auth import domain, repository
from services.auth.models import Address
from shop.lib.context import Caller
from shop.lib.db import Database, utcnow
from shop.lib.errors import Conflict, NotFound, ValidationError


def address_not_found() -> NotFound:
    return NotFound("Address not found.", code="ADDRESS_NOT_FOUND")


def cleaned(values: dict[str, str], country: str | None = None) -> dict[str, str]:
    fields, problems = domain.clean_address_fields(values, country)
    problems.raise_if_any()
    return fields


async def locked_address(session: AsyncSession, user_id: str, address_id: str) -> Address:
    """The user's address for a change, the user's row locked first (so one user's address changes
    are serialized); ADDRESS_NOT_FOUND when the user has no such address."""
    await repository.get_user(session, user_id, for_update=True)
    row = await repository.get_address(session, user_id, address_id)
    if row is None:
        raise address_not_found()
    return row


class Addresses:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, caller: Caller) -> Sequence[Address]:
        async with self.db.session() as session:
            return await repository.list_addresses(session, caller.user_id or "")

    async def create(self, caller: Caller, values: dict[str, str], is_default: bool) -> Address:
        fields = cleaned(values)
        user_id = caller.user_id or ""
        async with self.db.transaction() as session:
            await repository.get_user(session, user_id, for_update=True)
            count = await repository.count_addresses(session, user_id)
            if count >= domain.MAX_ADDRESSES_PER_USER:
                raise Conflict(
                    f"At most {domain.MAX_ADDRESSES_PER_USER} addresses per account.", code="ADDRESS_LIMIT_REACHED"
                )
            default = domain.new_address_is_default(count, is_default)
            if default:
                await repository.clear_default_address(session, user_id)
            return await repository.add_address(session, user_id, default, utcnow(), **fields)

    async def update(self, caller: Caller, address_id: str, given: dict[str, str], is_default: bool | None) -> Address:
        """`given` holds only the attributes the request set; `is_default` None leaves it as it is.
        A phone given without a country is checked against the stored country, once the row is read."""
        phone_alone = "phone" in given and "country" not in given
        fields = cleaned({name: value for name, value in given.items() if not (phone_alone and name == "phone")})
        if not domain.is_uuid(address_id):
            raise address_not_found()
        user_id = caller.user_id or ""
        async with self.db.transaction() as session:
            row = await locked_address(session, user_id, address_id)
            if phone_alone:
                fields.update(cleaned({"phone": given["phone"]}, row.country))
            if is_default and not row.is_default:
                await repository.clear_default_address(session, user_id)
                row.is_default = True
            elif is_default is False and row.is_default:
                raise ValidationError.single(
                    "isDefault", "exactly one address is the default: make another address the default instead"
                )
            for name, value in fields.items():
                setattr(row, name, value)
        return row

    async def delete(self, caller: Caller, address_id: str) -> None:
        """Deleting the default promotes the oldest remaining address."""
        if not domain.is_uuid(address_id):
            raise address_not_found()
        user_id = caller.user_id or ""
        async with self.db.transaction() as session:
            row = await locked_address(session, user_id, address_id)
            was_default = row.is_default
            await repository.delete_address(session, row)
            if was_default:
                successor = await repository.oldest_address(session, user_id)
                if successor is not None:
                    successor.is_default = True

    async def get_for_service(self, user_id: str, address_id: str) -> Address:
        if not (domain.is_uuid(user_id) and domain.is_uuid(address_id)):
            raise address_not_found()
        async with self.db.session() as session:
            row = await repository.get_address(session, user_id, address_id)
        if row is None:
            raise address_not_found()
        return row
