"""/api/v1/users/*: the signed-in user's profile and addresses, and admin user management
(auth service)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from gateway.deps import ApiModel, GatewayState, Principal, current_user, get_state, ok, page, require_admin
from gateway.errors import ApiError
from gateway.responses import JSONResponse
from gateway.routes.auth import (
    ROLES,
    USER_STATUSES,
    Data,
    OutModel,
    Page,
    UserOut,
    documented,
    user_json,
    without_refresh_cookie,
)
from shop.auth.v1 import auth_pb2
from shop.lib.validation import FieldErrors

router = APIRouter(prefix="/api/v1", tags=["users"])

RoleName = Literal["CUSTOMER", "SELLER", "ADMIN"]
StatusName = Literal["ACTIVE", "SUSPENDED", "DEACTIVATED"]


def address_json(address: auth_pb2.Address) -> dict[str, Any]:
    return {
        "id": address.id,
        "label": address.label,
        "firstName": address.first_name,
        "lastName": address.last_name,
        "line1": address.line1,
        "line2": address.line2 or None,
        "city": address.city,
        "state": address.state or None,
        "postalCode": address.postal_code,
        "country": address.country,
        "phone": address.phone or None,
        "isDefault": address.is_default,
    }


class AddressOut(OutModel):
    id: str
    label: str
    first_name: str
    last_name: str
    line1: str
    line2: str | None
    city: str
    state: str | None
    postal_code: str
    country: str
    phone: str | None
    is_default: bool


# -- bodies ---------------------------------------------------------------------------------------

class ProfilePatch(ApiModel):
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None


class PasswordBody(ApiModel):
    password: str


class AddressBody(ApiModel):
    label: str
    first_name: str
    last_name: str
    line1: str
    line2: str | None = None
    city: str
    state: str | None = None
    postal_code: str
    country: str
    phone: str | None = None
    is_default: bool | None = None


class AddressPatch(ApiModel):
    label: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    phone: str | None = None
    is_default: bool | None = None


class UserPatch(ApiModel):
    role: RoleName | None = None
    status: StatusName | None = None


# Attributes that may be cleared with null (the others, when present, must be strings).
_CLEARABLE = {"line2", "state", "phone"}
_CAMEL = {"first_name": "firstName", "last_name": "lastName", "postal_code": "postalCode", "is_default": "isDefault"}


def _patch_values(body: ApiModel, clearable: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    errors = FieldErrors()
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None:
            if name in clearable:
                value = ""
            else:
                errors.add(_CAMEL.get(name, name), "must not be null")
                continue
        values[name] = value
    errors.raise_if_any()
    return values


# -- the signed-in user ---------------------------------------------------------------------------

@router.get("/users/me", summary="The signed-in user's profile", responses=documented(Data[UserOut], 200, (401,)))
async def get_me(principal: Principal = Depends(current_user),
                 state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=principal.metadata)
    return ok(user_json(response.user))


@router.patch("/users/me", summary="Update firstName, lastName or phone",
              responses=documented(Data[UserOut], 200, (400, 401)))
async def patch_me(body: ProfilePatch, principal: Principal = Depends(current_user),
                   state: GatewayState = Depends(get_state)) -> JSONResponse:
    values = _patch_values(body, {"phone"})
    response = await state.clients.auth.UpdateProfile(auth_pb2.UpdateProfileRequest(**values),
                                                      metadata=principal.metadata)
    return ok(user_json(response.user))


@router.delete("/users/me", status_code=204, summary="Deactivate the account (needs the password); sessions end",
               responses=documented(None, 204, (400, 401, 429)))
async def delete_me(body: PasswordBody, request: Request, principal: Principal = Depends(current_user),
                    state: GatewayState = Depends(get_state)) -> Response:
    response = await state.clients.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(password=body.password),
                                                      metadata=principal.metadata)
    await state.revoke(*response.session_ids, principal.caller.session_id or "")
    return without_refresh_cookie(Response(status_code=204), request)


@router.get("/users/me/addresses", summary="The user's addresses (the default one is flagged)",
            responses=documented(Page[AddressOut], 200, (401,)))
async def list_addresses(principal: Principal = Depends(current_user),
                         state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.ListAddresses(auth_pb2.ListAddressesRequest(), metadata=principal.metadata)
    items = [address_json(a) for a in response.addresses]
    return page(items, "", len(items))


@router.post("/users/me/addresses", status_code=201, summary="Add an address (the first one becomes the default)",
             responses=documented(Data[AddressOut], 201, (400, 401, 409)))
async def create_address(body: AddressBody, principal: Principal = Depends(current_user),
                         state: GatewayState = Depends(get_state)) -> JSONResponse:
    address = auth_pb2.Address(
        label=body.label, first_name=body.first_name, last_name=body.last_name, line1=body.line1,
        line2=body.line2 or "", city=body.city, state=body.state or "", postal_code=body.postal_code,
        country=body.country, phone=body.phone or "", is_default=bool(body.is_default),
    )
    response = await state.clients.auth.CreateAddress(auth_pb2.CreateAddressRequest(address=address),
                                                      metadata=principal.metadata)
    return ok(address_json(response.address), 201)


@router.patch("/users/me/addresses/{address_id}", summary="Change an address (isDefault: true makes it the default)",
              responses=documented(Data[AddressOut], 200, (400, 401, 404)))
async def update_address(address_id: str, body: AddressPatch, principal: Principal = Depends(current_user),
                         state: GatewayState = Depends(get_state)) -> JSONResponse:
    values = _patch_values(body, _CLEARABLE)
    response = await state.clients.auth.UpdateAddress(
        auth_pb2.UpdateAddressRequest(address_id=address_id, **values), metadata=principal.metadata
    )
    return ok(address_json(response.address))


@router.delete("/users/me/addresses/{address_id}", status_code=204,
               summary="Delete an address (deleting the default makes another one the default)",
               responses=documented(None, 204, (401, 404)))
async def delete_address(address_id: str, principal: Principal = Depends(current_user),
                         state: GatewayState = Depends(get_state)) -> Response:
    await state.clients.auth.DeleteAddress(auth_pb2.DeleteAddressRequest(address_id=address_id),
                                           metadata=principal.metadata)
    return Response(status_code=204)


# -- admin ----------------------------------------------------------------------------------------

@router.get("/users", summary="List users (admin): filters role, status, q over email and names; paginated",
            responses=documented(Page[UserOut], 200, (400, 401, 403)))
async def list_users(
    role: RoleName | None = Query(None),
    status: StatusName | None = Query(None),
    q: str = Query("", max_length=100),
    page_size: int = Query(20, alias="pageSize", ge=1, le=100),
    page_token: str = Query("", alias="pageToken", max_length=2048),
    principal: Principal = Depends(require_admin),
    state: GatewayState = Depends(get_state),
) -> JSONResponse:
    request = auth_pb2.ListUsersRequest(
        page_size=page_size,
        page_token=page_token,
        role=ROLES.value_or_unspecified(role),
        status=USER_STATUSES.value_or_unspecified(status),
        query=q,
    )
    response = await state.clients.auth.ListUsers(request, metadata=principal.metadata)
    return page([user_json(u) for u in response.users], response.next_page_token, response.total_size)


@router.get("/users/{user_id}", summary="One user (admin)", responses=documented(Data[UserOut], 200, (401, 403, 404)))
async def get_user(user_id: str, principal: Principal = Depends(require_admin),
                   state: GatewayState = Depends(get_state)) -> JSONResponse:
    response = await state.clients.auth.GetUser(auth_pb2.GetUserRequest(user_id=user_id), metadata=principal.metadata)
    return ok(user_json(response.user))


@router.patch("/users/{user_id}",
              summary="Change a user's role or status (admin); suspending ends every session within 5 s",
              responses=documented(Data[UserOut], 200, (400, 401, 403, 404, 409)))
async def update_user(user_id: str, body: UserPatch, principal: Principal = Depends(require_admin),
                      state: GatewayState = Depends(get_state)) -> JSONResponse:
    if body.role is None and body.status is None:
        raise ApiError.validation({"role": ["give a role or a status"], "status": ["give a role or a status"]})
    request = auth_pb2.UpdateUserRequest(
        user_id=user_id,
        role=ROLES.value_or_unspecified(body.role),
        status=USER_STATUSES.value_or_unspecified(body.status),
    )
    response = await state.clients.auth.UpdateUser(request, metadata=principal.metadata)
    return ok(user_json(response.user))
