// Signing in (with the TOTP step when MFA is on), registering, and the pages the emails link to:
// /verify-email?token=… and /reset-password?token=… (and /forgot-password, which sends the latter).

import { auth } from '../api.js';
import { ErrorMessage, Field, Loading, Notice, html, navigate, useAction, useEffect, useForm, useState } from '../ui.js';

/** Only paths of this site are followed after signing in. */
function safeNext(next) {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

export function LoginPage({ where, next }) {
  const target = safeNext(next || where.query.get('next'));
  const [values, bind] = useForm({ email: '', password: '', otp: '' });
  const [needsOtp, setNeedsOtp] = useState(false);
  const action = useAction();
  const login = action.submit(async () => {
    try {
      await auth.login(values.email.trim(), values.password, needsOtp ? values.otp.trim() : undefined);
    } catch (error) {
      if (error.code === 'MFA_REQUIRED') {
        setNeedsOtp(true);
        return;
      }
      throw error;
    }
    navigate(target, { replace: true });
  });
  return html`<section class="narrow" aria-labelledby="login-title">
    <h1 id="login-title">Sign in</h1>
    ${next && html`<p class="muted">Please sign in to continue.</p>`}
    <form onSubmit=${login}>
      <${Field} label="Email" type="email" autocomplete="username" required ...${bind('email')} error=${action.error} />
      <${Field} label="Password" type="password" autocomplete="current-password" required ...${bind('password')}
        error=${action.error} />
      ${needsOtp && html`<${Notice}>Two-factor authentication is on for this account.<//>
        <${Field} label="Authentication code" inputmode="numeric" autocomplete="one-time-code" required autofocus
          hint="The 6-digit code from your authenticator app." ...${bind('otp')} error=${action.error} />`}
      <${ErrorMessage} error=${action.error} />
      <button type="submit" disabled=${action.busy}>${action.busy ? 'Signing in…' : 'Sign in'}</button>
    </form>
    <p><a href="/forgot-password">Forgot your password?</a> · New here? <a href=${`/register?next=${encodeURIComponent(target)}`}>Create an account</a></p>
  </section>`;
}

export const PASSWORD_RULES = '8 or more characters, with a lower-case letter, an upper-case letter and a digit.';

export function RegisterPage({ where }) {
  const target = safeNext(where.query.get('next'));
  const [values, bind] = useForm({ firstName: '', lastName: '', email: '', password: '' });
  const action = useAction();
  const register = action.submit(async () => {
    await auth.register({ ...values, email: values.email.trim() });
    navigate(target === '/' ? '/account?welcome=1' : target, { replace: true });
  });
  return html`<section class="narrow" aria-labelledby="register-title">
    <h1 id="register-title">Create an account</h1>
    <form onSubmit=${register}>
      <div class="row">
        <${Field} label="First name" autocomplete="given-name" required ...${bind('firstName')} error=${action.error} />
        <${Field} label="Last name" autocomplete="family-name" required ...${bind('lastName')} error=${action.error} />
      </div>
      <${Field} label="Email" type="email" autocomplete="email" required ...${bind('email')} error=${action.error} />
      <${Field} label="Password" type="password" autocomplete="new-password" required minlength="8"
        hint=${PASSWORD_RULES} ...${bind('password')} error=${action.error} />
      <${ErrorMessage} error=${action.error} />
      <button type="submit" disabled=${action.busy}>${action.busy ? 'Creating…' : 'Create account'}</button>
    </form>
    <p>Already have an account? <a href=${`/login?next=${encodeURIComponent(target)}`}>Sign in</a></p>
  </section>`;
}

export function ForgotPasswordPage() {
  const [email, setEmail] = useState('');
  const [sent, setSent] = useState(false);
  const action = useAction();
  const send = action.submit(async () => {
    await auth.forgotPassword(email.trim());
    setSent(true);
  });
  return html`<section class="narrow" aria-labelledby="forgot-title">
    <h1 id="forgot-title">Reset your password</h1>
    ${sent
      ? html`<${Notice}>If an account uses ${email}, an email with a reset link is on its way. The link works for 30 minutes.<//>`
      : html`<form onSubmit=${send}>
          <${Field} label="Email" type="email" autocomplete="email" required value=${email}
            onInput=${(e) => setEmail(e.currentTarget.value)} error=${action.error} name="email" />
          <${ErrorMessage} error=${action.error} />
          <button type="submit" disabled=${action.busy}>Send the reset link</button>
        </form>`}
  </section>`;
}

export function ResetPasswordPage({ where }) {
  const token = where.query.get('token') || '';
  const [password, setPassword] = useState('');
  const [done, setDone] = useState(false);
  const action = useAction();
  const reset = action.submit(async () => {
    await auth.resetPassword(token, password);
    setDone(true);
  });
  return html`<section class="narrow" aria-labelledby="reset-title">
    <h1 id="reset-title">Choose a new password</h1>
    ${!token && html`<p class="error" role="alert">This link has no token. Open the link from the email again, or
      <a href="/forgot-password">ask for a new one</a>.</p>`}
    ${done
      ? html`<${Notice}>Your password is changed and every session was signed out. <a href="/login">Sign in</a> with it.<//>`
      : token && html`<form onSubmit=${reset}>
          <${Field} label="New password" type="password" autocomplete="new-password" name="newPassword" required
            hint=${PASSWORD_RULES} value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} error=${action.error} />
          <${ErrorMessage} error=${action.error} />
          ${action.error && action.error.code === 'INVALID_TOKEN' && html`<p><a href="/forgot-password">Ask for a new link</a></p>`}
          <button type="submit" disabled=${action.busy}>Set the password</button>
        </form>`}
  </section>`;
}

export function VerifyEmailPage({ where }) {
  const token = where.query.get('token') || '';
  const [state, setState] = useState({ loading: Boolean(token), done: false, error: null });
  useEffect(() => {
    if (!token) return;
    auth.verifyEmail(token).then(
      () => setState({ loading: false, done: true, error: null }),
      (error) => setState({ loading: false, done: false, error }),
    );
  }, [token]);
  return html`<section class="narrow" aria-labelledby="verify-title">
    <h1 id="verify-title">Email verification</h1>
    ${!token && html`<p class="error" role="alert">This link has no token. Open the link from the email again.</p>`}
    ${state.loading && html`<${Loading} what="Verifying your email…" />`}
    ${state.done && html`<${Notice}>Thank you: your email address is verified. <a href="/">Continue shopping</a>.<//>`}
    <${ErrorMessage} error=${state.error} />
  </section>`;
}
