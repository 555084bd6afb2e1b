// Order history and one order, whose status follows the order live (Server-Sent Events).

import { orders } from '../api.js';
import {
  Empty, ErrorMessage, Loading, Notice, StatusBadge, html, money, useAction, useEffect, useLoad, useState, when,
} from '../ui.js';
import { addressLine } from './address.js';

export function OrdersPage() {
  const [pages, setPages] = useState([]);
  const first = useLoad(() => orders.list({ pageSize: 20 }), []);
  const action = useAction();
  const all = first.value ? [first.value, ...pages] : [];
  const last = all[all.length - 1];
  const more = () => action.run(async () => {
    const next = await orders.list({ pageSize: 20, pageToken: last.page.nextPageToken });
    setPages([...pages, next]);
  });
  const items = all.flatMap((p) => p.items);
  return html`<section aria-labelledby="orders-title">
    <h1 id="orders-title">Your orders</h1>
    ${first.loading && html`<${Loading} what="Loading your orders…" />`}
    <${ErrorMessage} error=${first.error || action.error} />
    ${first.value && items.length === 0 && html`<${Empty}><p>No orders yet. <a href="/products">Start shopping</a>.</p><//>`}
    ${items.length > 0 && html`<div class="table-wrap"><table>
      <caption class="visually-hidden">Your orders, newest first</caption>
      <thead><tr><th scope="col">Order</th><th scope="col">Placed</th><th scope="col">Status</th><th scope="col">Total</th></tr></thead>
      <tbody>${items.map((o) => html`<tr key=${o.id} data-order-id=${o.id}>
        <td><a href=${`/orders/${o.id}`}>${o.number}</a></td><td>${when(o.createdAt)}</td>
        <td><${StatusBadge} status=${o.status} /></td><td>${money(o.totalCents, o.currency)}</td></tr>`)}</tbody>
    </table></div>`}
    ${last && last.page.nextPageToken && html`<button type="button" class="secondary" onClick=${more}
      disabled=${action.busy}>Show older orders</button>`}
  </section>`;
}

/** The order, kept current by its event stream; `live` says whether the stream is connected. */
export function useLiveOrder(id) {
  const loaded = useLoad(() => orders.get(id), [id]);
  const [order, setOrder] = useState(null);
  const [live, setLive] = useState(false);
  const [streamError, setStreamError] = useState(null);
  useEffect(() => setOrder(loaded.value || null), [loaded.value]);
  useEffect(() => {
    if (!loaded.value || orders.isFinal(loaded.value.status)) return undefined;
    return orders.watch(id, {
      onStatus: (event) => {
        setStreamError(null);
        setOrder(event.order);
      },
      onLive: setLive,
      onError: setStreamError,
    });
  }, [loaded.value && loaded.value.id]);
  return { order, setOrder, loading: loaded.loading, error: loaded.error, live, streamError };
}

function History({ history }) {
  return html`<ol class="timeline" aria-label="Status history">${history.map((entry, i) => html`<li key=${i}>
    <${StatusBadge} status=${entry.status} /> <span class="muted">${when(entry.at)}</span>
    ${entry.note && html` · ${entry.note}`}</li>`)}</ol>`;
}

export function OrderSummary({ order }) {
  const c = order.currency;
  return html`<div class="order-summary">
    <div class="table-wrap"><table>
      <caption class="visually-hidden">Items</caption>
      <thead><tr><th scope="col">Item</th><th scope="col">Qty</th><th scope="col">Price</th><th scope="col">Total</th></tr></thead>
      <tbody>${order.items.map((i) => html`<tr key=${i.productId}><td>${i.name} <small class="muted">${i.sku}</small></td>
        <td>${i.quantity}</td><td>${money(i.unitPriceCents, c)}</td><td>${money(i.lineTotalCents, c)}</td></tr>`)}</tbody>
      <tfoot>
        <tr><th scope="row" colspan="3">Subtotal</th><td>${money(order.subtotalCents, c)}</td></tr>
        <tr><th scope="row" colspan="3">Tax</th><td>${money(order.taxCents, c)}</td></tr>
        <tr><th scope="row" colspan="3">Shipping</th><td>${money(order.shippingCents, c)}</td></tr>
        <tr><th scope="row" colspan="3">Total</th><td><strong>${money(order.totalCents, c)}</strong></td></tr>
      </tfoot>
    </table></div>
    <p><strong>Ship to:</strong> ${addressLine(order.shippingAddress)}</p>
    ${order.payment && html`<p><strong>Paid with:</strong> ${order.payment.brand || order.payment.method}
      ${order.payment.last4 && ` ending ${order.payment.last4}`} (${order.payment.status})</p>`}
    ${order.carrier && html`<p><strong>Shipped with:</strong> ${order.carrier}, tracking number ${order.trackingNumber}</p>`}
  </div>`;
}

export function OrderPage({ params, where }) {
  const { order, setOrder, loading, error, live, streamError } = useLiveOrder(params.id);
  const action = useAction();
  if (loading && !order) return html`<${Loading} what="Loading the order…" />`;
  if (error) return html`<section><h1>Order</h1><${ErrorMessage} error=${error} /><p><a href="/orders">Your orders</a></p></section>`;
  if (!order) return null;
  const cancel = () => action.run(async () => setOrder(await orders.cancel(order.id, 'Cancelled by the customer')));
  const cancellable = ['PENDING', 'PAID', 'PROCESSING'].includes(order.status);
  return html`<article aria-labelledby="order-title" class="order" data-order-id=${order.id}>
    <h1 id="order-title">Order ${order.number}</h1>
    ${where.query.get('placed') && html`<${Notice}>Thank you! Your order is placed. We email you when it ships.<//>`}
    <p class="status-line">Status: <span data-testid="order-status" aria-live="polite"><${StatusBadge} status=${order.status} /></span>
      ${!orders.isFinal(order.status) && html`<small class="muted">${live ? ' · live updates on' : ' · connecting for live updates…'}</small>`}</p>
    ${streamError && html`<p class="muted">${streamError.message}</p>`}
    <p class="muted">Placed ${when(order.createdAt)}</p>
    <${OrderSummary} order=${order} />
    <h2>History</h2>
    <${History} history=${order.history} />
    <${ErrorMessage} error=${action.error} />
    ${cancellable && html`<button type="button" class="secondary danger" onClick=${cancel} disabled=${action.busy}>Cancel this order</button>`}
    <p><a href="/orders">All your orders</a></p>
  </article>`;
}
