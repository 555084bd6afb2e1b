"""/api/v1/users/*: the signed-in user's profile and addresses, and admin user management
(auth service)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from gateway.deps import GatewayState, Principal, current_user, get_state, require_admin
from gateway.errors import ApiError
from gateway.openapi import errors
from gateway.routes.auth import without_refresh_cookie
from gateway.schemas.common import ApiModel, data, envelope, page, page_of
from gateway.schemas.users import (
    ROLES,
    USER_STATUSES,
    AddressInput,
    AddressPatch,
    PasswordBody,
    ProfilePatch,
    RoleName,
    SavedAddress,
    StatusName,
    User,
    UserPatch,
    address_fields,
    saved_address_json,
    user_json,
)
from shop.auth.v1 import auth_pb2
from shop.lib.validation import FieldErrors

router = APIRouter(prefix="/api/v1", tags=["users"])

AddressId = Path(alias="addressId", description="One of the user's saved addresses.")
UserId = Path(alias="userId")


# Attributes that may be cleared with null (the others, when present, must be strings).
_CLEARABLE = {"line2", "state", "phone"}
_CAMEL = {"first_name": "firstName", "last_name": "lastName", "postal_code": "postalCode", "is_default": "isDefault"}


def _patch_values(body: ApiModel, clearable: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    problems = FieldErrors()
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None:
            if name in clearable:
                value = ""
            else:
                problems.add(_CAMEL.get(name, name), "must not be null")
                continue
        values[name] = value
    problems.raise_if_any()
    return values


# -- the signed-in user ---------------------------------------------------------------------------


@router.get(
    "/users/me", operation_id="users-get-me", summary="The signed-in user's profile", response_model=envelope(User)
)
async def get_me(principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)):
    response = await state.clients.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=principal.metadata)
    return data(user_json(response.user))


@router.patch(
    "/users/me",
    operation_id="users-update-me",
    summary="Update firstName, lastName or phone",
    response_model=envelope(User),
)
async def patch_me(
    body: ProfilePatch, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
):
    values = _patch_values(body, {"phone"})
    response = await state.clients.auth.UpdateProfile(
        auth_pb2.UpdateProfileRequest(**values), metadata=principal.metadata
    )
    return data(user_json(response.user))


@router.delete(
    "/users/me",
    operation_id="users-delete-me",
    status_code=204,
    response_class=Response,
    summary="Deactivate the account (needs the password); sessions end",
    responses=errors(
        429, e400="INVALID_PASSWORD or VALIDATION_ERROR", e429="TOO_MANY_ATTEMPTS (Retry-After) or RATE_LIMITED"
    ),
)
async def delete_me(
    body: PasswordBody,
    request: Request,
    response: Response,
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
) -> None:
    result = await state.clients.auth.DeleteAccount(
        auth_pb2.DeleteAccountRequest(password=body.password), metadata=principal.metadata
    )
    await state.revoke(*result.session_ids, principal.caller.session_id or "")
    without_refresh_cookie(response, request)


@router.get(
    "/users/me/addresses",
    operation_id="users-list-addresses",
    summary="The user's addresses (the default one is flagged)",
    response_model=page_of(SavedAddress),
)
async def list_addresses(principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)):
    response = await state.clients.auth.ListAddresses(auth_pb2.ListAddressesRequest(), metadata=principal.metadata)
    items = [saved_address_json(a) for a in response.addresses]
    return page(items, "", len(items))


@router.post(
    "/users/me/addresses",
    operation_id="users-create-address",
    status_code=201,
    summary="Add an address (the first one becomes the default)",
    response_model=envelope(SavedAddress),
    responses=errors(409, e409="ADDRESS_LIMIT_REACHED"),
)
async def create_address(
    body: AddressInput, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
):
    """A saved address exactly as returned may be sent again: `id`, `createdAt` and `updatedAt` are ignored."""
    address = auth_pb2.Address(label=body.label or "", **address_fields(body), is_default=bool(body.is_default))
    response = await state.clients.auth.CreateAddress(
        auth_pb2.CreateAddressRequest(address=address), metadata=principal.metadata
    )
    return data(saved_address_json(response.address))


@router.patch(
    "/users/me/addresses/{addressId}",
    operation_id="users-update-address",
    summary="Change an address (isDefault: true makes it the default)",
    response_model=envelope(SavedAddress),
    responses=errors(404, e404="ADDRESS_NOT_FOUND"),
)
async def update_address(
    body: AddressPatch,
    address_id: str = AddressId,
    principal: Principal = Depends(current_user),
    state: GatewayState = Depends(get_state),
):
    values = _patch_values(body, _CLEARABLE)
    response = await state.clients.auth.UpdateAddress(
        auth_pb2.UpdateAddressRequest(address_id=address_id, **values), metadata=principal.metadata
    )
    return data(saved_address_json(response.address))


@router.delete(
    "/users/me/addresses/{addressId}",
    operation_id="users-delete-address",
    status_code=204,
    response_class=Response,
    summary="Delete an address (deleting the default makes another one the default)",
    responses=errors(404, e404="ADDRESS_NOT_FOUND"),
)
async def delete_address(
    address_id: str = AddressId, principal: Principal = Depends(current_user), state: GatewayState = Depends(get_state)
) -> None:
    await state.clients.auth.DeleteAddress(
        auth_pb2.DeleteAddressRequest(address_id=address_id), metadata=principal.metadata
    )


# -- admin ----------------------------------------------------------------------------------------


@router.get(
    "/users",
    operation_id="users-list",
    summary="List users (admin): filters role, status, q over email and names; paginated",
    response_model=page_of(User),
    responses=errors(403),
)
async def list_users(
    role: RoleName | None = Query(None),
    status: StatusName | None = Query(None),
    q: str = Query("", max_length=100),
    page_size: int = Query(20, alias="pageSize", ge=1, le=100),
    page_token: str = Query("", alias="pageToken", max_length=2048),
    principal: Principal = Depends(require_admin),
    state: GatewayState = Depends(get_state),
):
    request = auth_pb2.ListUsersRequest(
        page_size=page_size,
        page_token=page_token,
        role=ROLES.value_or_unspecified(role),
        status=USER_STATUSES.value_or_unspecified(status),
        query=q,
    )
    response = await state.clients.auth.ListUsers(request, metadata=principal.metadata)
    return page([user_json(u) for u in response.users], response.next_page_token, response.total_size)


@router.get(
    "/users/{userId}",
    operation_id="users-get",
    summary="One user (admin)",
    response_model=envelope(User),
    responses=errors(403, 404, e404="USER_NOT_FOUND"),
)
async def get_user(
    user_id: str = UserId, principal: Principal = Depends(require_admin), state: GatewayState = Depends(get_state)
):
    response = await state.clients.auth.GetUser(auth_pb2.GetUserRequest(user_id=user_id), metadata=principal.metadata)
    return data(user_json(response.user))


@router.patch(
    "/users/{userId}",
    operation_id="users-update",
    summary="Change a user's role or status (admin); suspending ends every session within 5 s",
    response_model=envelope(User),
    responses=errors(403, 404, 409, e404="USER_NOT_FOUND", e409="CANNOT_CHANGE_SELF"),
)
async def update_user(
    body: UserPatch,
    user_id: str = UserId,
    principal: Principal = Depends(require_admin),
    state: GatewayState = Depends(get_state),
):
    values = _patch_values(body, clearable=set())  # null is refused: neither can be cleared
    if not values:
        raise ApiError.validation({"role": ["give a role or a status"], "status": ["give a role or a status"]})
    request = auth_pb2.UpdateUserRequest(
        user_id=user_id,
        role=ROLES.value_or_unspecified(values.get("role")),
        status=USER_STATUSES.value_or_unspecified(values.get("status")),
    )
    response = await state.clients.auth.UpdateUser(request, metadata=principal.metadata)
    return data(user_json(response.user))
