// The relay's JSON API, as the pages use it. The session is the HttpOnly
// cookie set by POST /api/login: the pages never see the token.

/** An answer that was not 2xx, with the relay's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the relay (${e.message})`);
  }
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    throw new ApiError(resp.status, data?.error ?? `the relay answered ${resp.status}`);
  }
  return data;
}

export const login = (user, password, code) =>
  call("POST", "/api/login", code ? { user, password, code } : { user, password });
export const logout = () => call("POST", "/api/logout");
export const me = () => call("GET", "/api/me");
/** Turning codes on or replacing them needs the password again (and a current code when they are on). */
export const totpSetup = (password, code) =>
  call("POST", "/api/totp/setup", code ? { password, code } : { password });
export const totpConfirm = (code) => call("POST", "/api/totp/confirm", { code });
export const changePassword = (current, next) =>
  call("POST", "/api/password", { current, new: next });
export const services = () => call("GET", "/api/services");
/** The single sign-on providers: [{ name, label }]; each signs in at /auth/oidc/NAME. */
export const ssoProviders = () => call("GET", "/api/sso");

/** Runs `f`; on 401 (signed out or expired) goes back to the sign-in page. */
export async function signedIn(f) {
  try {
    return await f();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      location.replace("/");
      return new Promise(() => {});
    }
    throw e;
  }
}

/** One request to the relay's API (for the admin pages): the answer's JSON, null for 204, or an ApiError. */
export const request = (method, path, body) => call(method, path, body);
