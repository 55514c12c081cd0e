// wxlogin.js: the mini-program side of wxlogin.
//
// A small wrapper around `wx.request` that keeps the session token in
// storage, sends it on every request, and logs in again by itself when the
// server says so (401 with `"relogin": true`), replaying the request once.
// CommonJS and dependency-free, so it runs in a mini program and in Node (the
// tests drive it with a `wx` shim over real HTTP).
//
//   const { createClient } = require('./wxlogin');
//   const api = createClient({ baseUrl: 'https://api.example.com' });
//   const res = await api.request({ url: '/api/me' }); // res.statusCode, res.data, res.header
//
// The server's error format is `{"error": CODE, "message": TEXT, "relogin": BOOL}`;
// see docs/miniprogram.md in the wxlogin repository for every code.

'use strict';

/**
 * An error in the server's format, or one of the client's own:
 * `network_error` (wx.request failed), `wx_login_failed` (wx.login failed),
 * `bad_login_response` (a 2xx login answer without a token), `logged_out`
 * (logout() was called while the login was in flight), or
 * `http_<status>` (an error status whose body is not the server's JSON).
 */
class WxLoginError extends Error {
  constructor(code, message, { status = 0, relogin = false, data = null, cause } = {}) {
    super(message || code);
    this.name = 'WxLoginError';
    this.code = code;
    this.status = status;
    this.relogin = relogin;
    this.data = data;
    if (cause !== undefined) this.cause = cause;
  }
}

/** Builds the error for a non-2xx response. */
function errorFromResponse(res) {
  const body = res.data;
  if (body && typeof body === 'object' && typeof body.error === 'string') {
    return new WxLoginError(body.error, body.message || body.error, {
      status: res.statusCode,
      relogin: body.relogin === true,
      data: body,
    });
  }
  return new WxLoginError(`http_${res.statusCode}`, `HTTP ${res.statusCode}`, {
    status: res.statusCode,
    data: body === undefined ? null : body,
  });
}

function isSuccess(status) {
  return status >= 200 && status < 300;
}

function needsRelogin(res) {
  return (
    res.statusCode === 401 &&
    res.data !== null &&
    typeof res.data === 'object' &&
    res.data.relogin === true
  );
}

/**
 * Creates a client.
 *
 * @param {object} opts
 * @param {string} opts.baseUrl     the server, e.g. `https://api.example.com` (no trailing slash needed)
 * @param {string} [opts.loginPath='/wx/login']
 * @param {string} [opts.logoutPath='/wx/logout']
 * @param {string} [opts.tokenKey='wxlogin_token']  storage key of the token
 * @param {string} [opts.header='Authorization']    `Authorization` sends `Bearer <token>`;
 *                                                  any other name (e.g. `X-WX-Session`) sends the bare token
 * @param {string} [opts.appId]                     sent as `appid` with the login code, for a server that
 *                                                  serves several mini programs on one login route
 *                                                  (`wx.getAccountInfoSync().miniProgram.appId`)
 * @param {object} [opts.wx=globalThis.wx]          the `wx` object (a shim in tests)
 * @returns {{ request: (options: object) => Promise<object>, login: () => Promise<string>, logout: () => Promise<boolean> }}
 */
function createClient(opts) {
  const {
    baseUrl,
    loginPath = '/wx/login',
    logoutPath = '/wx/logout',
    tokenKey = 'wxlogin_token',
    header = 'Authorization',
    appId,
  } = opts || {};
  const wx = (opts && opts.wx) || (typeof globalThis !== 'undefined' ? globalThis.wx : undefined);
  if (typeof baseUrl !== 'string' || baseUrl === '') {
    throw new TypeError('createClient: baseUrl is required');
  }
  if (!wx) {
    throw new TypeError('createClient: no `wx` object (pass opts.wx outside a mini program)');
  }
  const base = baseUrl.replace(/\/+$/, '');
  const bearer = header.toLowerCase() === 'authorization';

  // The one login in flight, shared by every request waiting for a token.
  let loggingIn = null;
  // Bumped by logout(): a login that started before it must not store its token.
  let generation = 0;

  function absolute(url) {
    return /^https?:\/\//i.test(url) ? url : base + (url.startsWith('/') ? url : `/${url}`);
  }

  function readToken() {
    try {
      return wx.getStorageSync(tokenKey) || '';
    } catch (_) {
      return '';
    }
  }

  function writeToken(token) {
    try {
      if (token) {
        wx.setStorageSync(tokenKey, token);
      } else {
        wx.removeStorageSync(tokenKey);
      }
    } catch (_) {
      // Storage full or unavailable: the token still lives for this call.
    }
  }

  function authHeader(token) {
    return { [header]: bearer ? `Bearer ${token}` : token };
  }

  // wx.request as a promise that resolves with the response for ANY status
  // (wx.request calls `success` for 4xx and 5xx too) and rejects only when no
  // response arrived. Some clients route an HTTP error to `fail` with a
  // statusCode; that counts as a response.
  function send(options) {
    return new Promise((resolve, reject) => {
      wx.request({
        ...options,
        success: (res) => resolve(res),
        fail: (err) => {
          if (err && typeof err.statusCode === 'number' && err.statusCode > 0) {
            resolve(err);
            return;
          }
          const msg = (err && (err.errMsg || err.message)) || 'request failed';
          reject(new WxLoginError('network_error', msg, { cause: err }));
        },
      });
    });
  }

  function wxLogin() {
    return new Promise((resolve, reject) => {
      wx.login({
        success: (res) => {
          if (res && typeof res.code === 'string' && res.code !== '') {
            resolve(res.code);
          } else {
            reject(new WxLoginError('wx_login_failed', 'wx.login gave no code', { data: res }));
          }
        },
        fail: (err) => {
          const msg = (err && (err.errMsg || err.message)) || 'wx.login failed';
          reject(new WxLoginError('wx_login_failed', msg, { cause: err }));
        },
      });
    });
  }

  // One code exchange: wx.login, POST {code}, store the token.
  async function exchange() {
    const started = generation;
    const code = await wxLogin();
    const res = await send({
      url: absolute(loginPath),
      method: 'POST',
      data: appId ? { code, appid: appId } : { code },
      header: { 'content-type': 'application/json' },
    });
    if (!isSuccess(res.statusCode)) {
      throw errorFromResponse(res);
    }
    const token = res.data && typeof res.data === 'object' ? res.data.token : undefined;
    if (typeof token !== 'string' || token === '') {
      throw new WxLoginError('bad_login_response', 'the login answer has no token', {
        status: res.statusCode,
        data: res.data === undefined ? null : res.data,
      });
    }
    if (started !== generation) {
      // logout() ran meanwhile: do not log the user back in; end this session too.
      send({ url: absolute(logoutPath), method: 'POST', header: authHeader(token) }).catch(() => {});
      throw new WxLoginError('logged_out', 'logout() was called during the login');
    }
    writeToken(token);
    return token;
  }

  /**
   * Logs in (wx.login, then the login route) and stores the token. Calls
   * made while a login is in flight share it. A stale or reused code
   * (`invalid_code`) gets one fresh code and one more try.
   */
  function login() {
    if (!loggingIn) {
      loggingIn = (async () => {
        try {
          return await exchange();
        } catch (err) {
          if (err instanceof WxLoginError && err.code === 'invalid_code') {
            return exchange();
          }
          throw err;
        }
      })().finally(() => {
        loggingIn = null;
      });
    }
    return loggingIn;
  }

  // A token to send: the stored one, or (fresh: true) the one being fetched
  // or a new login.
  async function currentToken() {
    if (!loggingIn) {
      const token = readToken();
      if (token) return { token, fresh: false };
    }
    return { token: await login(), fresh: true };
  }

  // After a relogin answer to a request sent with `used`: a fresh token,
  // logging in only if nobody has replaced `used` yet.
  function freshToken(used) {
    if (loggingIn) return loggingIn;
    const stored = readToken();
    if (stored && stored !== used) return Promise.resolve(stored);
    writeToken('');
    return login();
  }

  function attempt(options, token) {
    // The caller's callbacks are not wx.request's: the promise replaces them.
    const { success, fail, complete, ...rest } = options;
    return send({
      ...rest,
      url: absolute(options.url),
      header: { ...(options.header || {}), ...authHeader(token) },
    });
  }

  /**
   * Sends a request with the session token (logging in first when there is
   * none); on `401` with `relogin: true` logs in again (one login shared by
   * concurrent requests) and replays the request once. A request logs in at
   * most once and is sent at most twice.
   *
   * Resolves with the `wx.request` response (`statusCode`, `data`, `header`)
   * for a 2xx status; rejects with a `WxLoginError` (`code`, `status`,
   * `relogin`, `data`) otherwise.
   */
  async function request(options) {
    if (!options || typeof options.url !== 'string') {
      throw new TypeError('request: options.url is required');
    }
    const { token, fresh } = await currentToken();
    let res = await attempt(options, token);
    // A token that was just issued is not worth another login: a 401 on it
    // is returned as an error, like a 401 on the one replay. No loops.
    if (!fresh && needsRelogin(res)) {
      res = await attempt(options, await freshToken(token));
    }
    if (!isSuccess(res.statusCode)) {
      throw errorFromResponse(res);
    }
    return res;
  }

  /**
   * Ends the session: forgets the token at once, then tells the server
   * (the logout route). Resolves `true` when the server confirmed (204),
   * `false` when there was no token or the server could not be told; it never
   * rejects, since the user is logged out on this device either way.
   */
  async function logout() {
    generation += 1;
    const token = readToken();
    writeToken('');
    if (!token) return false;
    try {
      const res = await send({
        url: absolute(logoutPath),
        method: 'POST',
        header: authHeader(token),
      });
      return isSuccess(res.statusCode);
    } catch (_) {
      return false;
    }
  }

  return { request, login, logout };
}

module.exports = { createClient, WxLoginError };
