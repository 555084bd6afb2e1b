// The cart (a guest's or the user's) and checkout: a saved or new address, a sandbox card.

import { ApiError, cart, newIdempotencyKey, orders, users } from '../api.js';
import {
  Empty, ErrorMessage, Field, Loading, html, money, navigate, useAction, useForm, useLoad, useState,
} from '../ui.js';
import { AddressFields, EMPTY_ADDRESS, addressBody, addressLine } from './address.js';

// The sandbox provider's test cards (services/payments/README.md): what a card form would turn
// into a provider token in the browser. Other numbers are refused before anything is sent.
export const SANDBOX_CARDS = [
  { number: '4242 4242 4242 4242', token: 'tok_visa', label: 'Visa, succeeds' },
  { number: '5555 5555 5555 4444', token: 'tok_mastercard', label: 'Mastercard, succeeds' },
  { number: '4000 0000 0000 0002', token: 'tok_chargeDeclined', label: 'declined' },
  { number: '4000 0000 0000 9995', token: 'tok_chargeDeclinedInsufficientFunds', label: 'declined: insufficient funds' },
];

export function sandboxToken(number) {
  const digits = number.replace(/\D/g, '');
  const card = SANDBOX_CARDS.find((c) => c.number.replace(/\D/g, '') === digits);
  if (!card) {
    throw new ApiError(400, 'VALIDATION_ERROR', 'This is a sandbox shop: use one of the test card numbers listed.',
      { fields: { cardNumber: ['not a sandbox test card'] } });
  }
  return card.token;
}

function CartLine({ item, currency, onChange }) {
  const [quantity, setQuantity] = useState(item.quantity);
  const action = useAction();
  const update = (value) => action.run(async () => {
    await cart.setQuantity(item.productId, Number(value));
    onChange();
  });
  const remove = () => action.run(async () => {
    await cart.remove(item.productId);
    onChange();
  });
  return html`<li class="cart-line" data-product-id=${item.productId}>
    <div><a href=${`/products/${item.productId}`}>${item.name}</a>
      ${!item.available && html`<p class="error-text">No longer available in this quantity</p>`}
      <small class="muted">${money(item.unitPriceCents, currency)} each</small></div>
    <form onSubmit=${(e) => { e.preventDefault(); update(quantity); }} class="qty">
      <${Field} label=${`Quantity of ${item.name}`} type="number" min="0" max="100" value=${quantity}
        onInput=${(e) => setQuantity(e.currentTarget.value)} onChange=${(e) => update(e.currentTarget.value)} />
    </form>
    <p class="line-total">${money(item.lineTotalCents, currency)}</p>
    <button type="button" class="link" onClick=${remove} disabled=${action.busy}
      aria-label=${`Remove ${item.name}`}>Remove</button>
    <${ErrorMessage} error=${action.error} />
  </li>`;
}

export function CartPage({ user }) {
  const current = useLoad(() => cart.get(), [user && user.id]);
  if (current.loading && !current.value) return html`<${Loading} what="Loading your cart…" />`;
  const c = current.value;
  return html`<section aria-labelledby="cart-title">
    <h1 id="cart-title">Your cart</h1>
    <${ErrorMessage} error=${current.error} />
    ${c && c.items.length === 0 && html`<${Empty}><p>Your cart is empty. <a href="/products">Browse products</a>.</p><//>`}
    ${c && c.items.length > 0 && html`
      <ul class="plain cart-lines">${c.items.map((item) => html`<${CartLine} key=${item.productId} item=${item}
        currency=${c.currency} onChange=${current.reload} />`)}</ul>
      <p class="total">Subtotal (${c.itemCount} items): <strong data-testid="cart-subtotal">${money(c.subtotalCents, c.currency)}</strong></p>
      <p class="muted">Tax and shipping are added at checkout.</p>
      <p>${user
        ? html`<a class="button" href="/checkout">Check out</a>`
        : html`<a class="button" href="/login?next=/checkout">Sign in to check out</a>
            <span class="muted"> Your cart comes with you when you sign in or register.</span>`}</p>`}
  </section>`;
}

function AddressChoice({ addresses, choice, setChoice }) {
  return html`<fieldset>
    <legend>Ship to</legend>
    ${addresses.map((a) => html`<label key=${a.id} class="choice">
      <input type="radio" name="address" value=${a.id} checked=${choice === a.id} onChange=${() => setChoice(a.id)} />
      <span><strong>${a.label}</strong> ${addressLine(a)}${a.isDefault ? ' (default)' : ''}</span></label>`)}
    <label class="choice"><input type="radio" name="address" value="new" checked=${choice === 'new'}
      onChange=${() => setChoice('new')} /> <span>A new address</span></label>
  </fieldset>`;
}

export function CheckoutPage() {
  const current = useLoad(() => cart.get(), []);
  const addresses = useLoad(() => users.addresses().then((r) => r.items), []);
  const [choice, setChoice] = useState(null);
  const [address, bindAddress] = useForm({ ...EMPTY_ADDRESS, label: 'Home', save: true });
  const [card, setCard] = useState('');
  const [key, setKey] = useState(newIdempotencyKey);
  const action = useAction();
  if (current.loading || addresses.loading) return html`<${Loading} what="Preparing checkout…" />`;
  if (current.error || addresses.error) return html`<${ErrorMessage} error=${current.error || addresses.error} />`;
  const c = current.value;
  if (c.items.length === 0) {
    return html`<section><h1>Checkout</h1><${Empty}><p>Your cart is empty. <a href="/products">Browse products</a>.</p><//></section>`;
  }
  const saved = addresses.value;
  const selected = choice || (saved.find((a) => a.isDefault) || saved[0] || { id: 'new' }).id;
  const place = action.submit(async () => {
    const paymentToken = sandboxToken(card);
    let target = { addressId: selected };
    if (selected === 'new') {
      const fields = addressBody(address);
      if (address.save) {
        const created = await users.createAddress(fields);
        // Saved now: a second try (e.g. after a declined card) uses it instead of saving it again.
        addresses.set([...saved, created]);
        setChoice(created.id);
        target = { addressId: created.id };
      } else {
        const { label, ...shippingAddress } = fields;
        target = { shippingAddress };
      }
    }
    try {
      const order = await orders.create({ ...target, paymentToken, idempotencyKey: key });
      await cart.get().catch(() => null);
      navigate(`/orders/${order.id}?placed=1`);
    } catch (error) {
      // The same key may be sent again only when the first answer never came back.
      if (error.status !== 0 && error.status < 500) setKey(newIdempotencyKey());
      throw error;
    }
  });
  return html`<section aria-labelledby="checkout-title" class="checkout">
    <h1 id="checkout-title">Checkout</h1>
    <form onSubmit=${place}>
      <${AddressChoice} addresses=${saved} choice=${selected} setChoice=${setChoice} />
      ${selected === 'new' && html`<fieldset><legend>New address</legend>
        <${AddressFields} bind=${bindAddress} error=${action.error} />
        <${Field} label="Save this address to my account" type="checkbox" checked=${address.save} ...${bindAddress('save')} />
      </fieldset>`}
      <fieldset><legend>Payment (sandbox card)</legend>
        <${Field} label="Card number" field="cardNumber" name="cardNumber" autocomplete="cc-number" inputmode="numeric"
          value=${card} onInput=${(e) => setCard(e.currentTarget.value)} error=${action.error} required
          hint="Test cards: 4242 4242 4242 4242 (Visa) or 5555 5555 5555 4444 (Mastercard) succeed; 4000 0000 0000 0002 is declined, 4000 0000 0000 9995 is declined for insufficient funds." />
      </fieldset>
      <div class="summary">
        <h2>Order summary</h2>
        <ul class="plain">${c.items.map((i) => html`<li key=${i.productId}>${i.quantity} × ${i.name}
          <span>${money(i.lineTotalCents, c.currency)}</span></li>`)}</ul>
        <p>Subtotal: <strong>${money(c.subtotalCents, c.currency)}</strong></p>
        <p class="muted">8% tax; shipping ${money(999, c.currency)}, free from ${money(10000, c.currency)}.</p>
      </div>
      <${ErrorMessage} error=${action.error} />
      <button type="submit" disabled=${action.busy}>${action.busy ? 'Placing your order…' : 'Place order'}</button>
    </form>
  </section>`;
}
