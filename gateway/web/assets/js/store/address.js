// The one address form (saved addresses and a checkout's new address share it).

import { COUNTRIES, Field, html } from '../ui.js';

export const EMPTY_ADDRESS = {
  label: '', firstName: '', lastName: '', line1: '', line2: '', city: '', state: '', postalCode: '', country: 'US',
  phone: '',
};

export function addressLine(a) {
  return [`${a.firstName} ${a.lastName}`, a.line1, a.line2, `${a.postalCode} ${a.city}`, a.state, a.country]
    .filter(Boolean).join(', ');
}

/** Only the fields the API takes (no id, isDefault, createdAt), optional ones left out when empty. */
export function addressBody(values) {
  const body = {};
  for (const name of Object.keys(EMPTY_ADDRESS)) {
    const value = (values[name] || '').trim();
    if (value || !['line2', 'state', 'phone'].includes(name)) body[name] = value;
  }
  return body;
}

export function AddressFields({ bind, error, withLabel = true }) {
  return html`<div class="address-fields">
    ${withLabel && html`<${Field} label="Label (e.g. Home)" ...${bind('label')} error=${error} required />`}
    <div class="row">
      <${Field} label="First name" autocomplete="given-name" ...${bind('firstName')} error=${error} required />
      <${Field} label="Last name" autocomplete="family-name" ...${bind('lastName')} error=${error} required />
    </div>
    <${Field} label="Address line 1" autocomplete="address-line1" ...${bind('line1')} error=${error} required />
    <${Field} label="Address line 2 (optional)" autocomplete="address-line2" ...${bind('line2')} error=${error} />
    <div class="row">
      <${Field} label="City" autocomplete="address-level2" ...${bind('city')} error=${error} required />
      <${Field} label="State / region (optional)" autocomplete="address-level1" ...${bind('state')} error=${error} />
    </div>
    <div class="row">
      <${Field} label="Postal code" autocomplete="postal-code" ...${bind('postalCode')} error=${error} required />
      <${Field} label="Country" autocomplete="country" ...${bind('country')} error=${error}>
        ${COUNTRIES.map(([code, name]) => html`<option key=${code} value=${code}>${name}</option>`)}
      <//>
    </div>
    <${Field} label="Phone (optional)" type="tel" autocomplete="tel" ...${bind('phone')} error=${error} />
  </div>`;
}
