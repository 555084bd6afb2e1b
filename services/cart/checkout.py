"""Use cases of the orders service's checkout (internal callers only): CheckoutCart takes the
owner's cart for one checkout id, RestoreCart puts what a checkout id took back. Each is one
`db.write()` transaction; both are safe to repeat (see README "Checkout"). `runtime` is the
service's `server.Runtime`."""

from __future__ import annotations

from services.cart import domain, repository
from services.cart.domain import Line, Owner
from shop.lib.db import utcnow


async def checkout_cart(runtime, owner: Owner, checkout_id: str) -> list[Line]:
    """The cart's lines, recorded under `checkout_id` and removed from the cart; a repeat of the
    id answers the recorded lines and takes nothing."""
    now = utcnow()
    async with runtime.db.write() as tx:
        # The cart's lock serialises checkouts of one cart: the second one reads no lines.
        # (A cart that does not exist has no lines; nothing is created for it.)
        exists = await repository.lock_cart(tx, owner.cart_id)
        lines = await repository.lines(tx, owner.cart_id) if exists else []
        if await repository.take_cart(tx, checkout_id, owner, lines, now):
            return lines
        # A repeat (or a concurrent twin): the recorded lines, nothing taken again.
        recorded = await repository.checkout(tx, checkout_id)
        assert recorded is not None
        domain.check_same_checkout_owner(recorded.cart_id, owner.cart_id)
        return recorded.lines


async def restore_cart(runtime, checkout_id: str) -> None:
    """The lines `checkout_id` took go back into its owner's cart, once (`domain.restored_lines`)."""
    now = utcnow()
    async with runtime.db.write() as tx:
        recorded = await repository.lock_checkout(tx, checkout_id)
        if recorded is None:
            # Nothing was taken under this id. Remember it as restored, so a CheckoutCart with
            # it that arrives later (a retry, or one still running) takes nothing; if such a
            # checkout is committing right now, this insert waits for it and then restores it.
            if await repository.record_checkout(tx, checkout_id, None, [], domain.RESTORED, now):
                return
            recorded = await repository.lock_checkout(tx, checkout_id)
            assert recorded is not None
        if recorded.state != domain.TAKEN or recorded.owner is None:
            return  # restored already
        if recorded.lines:
            cart_id = await repository.touch_cart(tx, recorded.owner, now)  # creates and locks the cart
            existing = {line.product_id: line.quantity for line in await repository.lines(tx, cart_id)}
            for line in domain.restored_lines(existing, recorded.lines, runtime.settings.max_cart_lines):
                await repository.set_quantity(tx, cart_id, line.product_id, line.quantity, now)
        await repository.mark_checkout_restored(tx, checkout_id)
