// wxlogin.js: the mini-program side of wxlogin (npm package `wxlogin-miniprogram`).
//
// A small wrapper around `wx.request`, `wx.uploadFile` and `wx.downloadFile`
// that keeps the session token in storage, sends it on every request, and
// logs in again by itself when the server says so (401 with
// `"relogin": true`), replaying the request once. CommonJS and
// dependency-free, so it runs in a mini program, under Taro and uni-app
// (pass `Taro` or `uni` as `wx`) and in Node (the tests drive it with shims
// over real HTTP).
//
//   const { createClient } = require('wxlogin-miniprogram');
//   const api = createClient({ baseUrl: 'https://api.example.com' });
//   const res = await api.request({ url: '/api/me' }); // res.statusCode, res.data, res.header
//
// The server's error format is `{"error": CODE, "message": TEXT, "relogin": BOOL}`;
// an app that wraps it in its own envelope passes `readError` and `readToken`.
// See docs/miniprogram.md in the wxlogin repository for every code.

'use strict';

/** Default for `loginTimeout`: over the server's own WeChat deadline (5 s) plus its store calls. */
const DEFAULT_LOGIN_TIMEOUT_MS = 15000;

/**
 * An error in the server's format, or one of the client's own:
 * `network_error` (the request failed without a response), `wx_login_failed`
 * (wx.login failed), `login_timeout` (the login took longer than
 * `loginTimeout`), `bad_login_response` (a successful login answer without a
 * token), `logged_out` (logout() was called while the login was in flight),
 * or `http_<status>` (an error status whose body is not the server's JSON).
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

function isSuccess(status) {
  return typeof status === 'number' && status >= 200 && status < 300;
}

function isObject(v) {
  return v !== null && typeof v === 'object';
}

/** wxlogin's own error format; `http_<status>` for any other error body; null for a 2xx. */
function wxloginErrorInfo(res) {
  if (isSuccess(res.statusCode)) return null;
  const body = res.data;
  if (isObject(body) && typeof body.error === 'string') {
    return { code: body.error, message: body.message, relogin: body.relogin === true };
  }
  return { code: `http_${res.statusCode}`, message: `HTTP ${res.statusCode}` };
}

/** Bodies that arrive as text (uploadFile, dataType 'text', a downloaded error) read as JSON when they are. */
function parseJsonText(data) {
  if (typeof data !== 'string') return data;
  const text = data.trim();
  if (!(text.startsWith('{') || text.startsWith('['))) return data;
  try {
    return JSON.parse(text);
  } catch (_) {
    return data;
  }
}

/** Merges header objects left to right; names compare case-insensitively (the later one wins). */
function mergeHeaders(...sources) {
  const out = {};
  for (const src of sources) {
    if (!isObject(src)) continue;
    for (const name of Object.keys(src)) {
      const lower = name.toLowerCase();
      for (const existing of Object.keys(out)) {
        if (existing.toLowerCase() === lower) delete out[existing];
      }
      out[name] = src[name];
    }
  }
  return out;
}

function errText(err, fallback) {
  return (err && (err.errMsg || err.message)) || fallback;
}

/**
 * Creates a client. See README.md for every option; in short:
 *
 * @param {object} opts
 * @param {string} opts.baseUrl       the server, e.g. `https://api.example.com`
 * @param {object} [opts.wx]          the API object: `wx` (default `globalThis.wx`), `Taro`, `uni`, or a shim
 * @param {string} [opts.loginPath='/wx/login']
 * @param {string} [opts.logoutPath='/wx/logout']
 * @param {string} [opts.tokenKey='wxlogin_token']       storage key of the token
 * @param {string} [opts.tokenHeader='Authorization']    `Authorization` sends `Bearer <token>`; any other
 *                                                       name sends the bare token (`header` is the old name)
 * @param {string} [opts.appId]                          sent as `appid` with the login code
 * @param {object|function} [opts.defaultHeader]         headers for every request (or a function returning them)
 * @param {number} [opts.loginTimeout=15000]             ms for one login (wx.login and the login route), then `login_timeout`
 * @param {function} [opts.readToken]                    `(data, res) => token` from the login answer (default `data.token`)
 * @param {function} [opts.readError]                    `(res) => {code, message, relogin} | null`: the error a response carries
 * @param {function} [opts.isRelogin]                    `(error, res) => boolean`: log in again and replay?
 *                                                       (default: status 401 with `relogin`)
 */
function createClient(opts) {
  const o = opts || {};
  const {
    baseUrl,
    loginPath = '/wx/login',
    logoutPath = '/wx/logout',
    tokenKey = 'wxlogin_token',
    appId,
    loginTimeout = DEFAULT_LOGIN_TIMEOUT_MS,
    defaultHeader,
    readToken = (data) => (isObject(data) ? data.token : undefined),
    readError,
    isRelogin = (error) => error.status === 401 && error.relogin === true,
  } = o;
  const tokenHeader = o.tokenHeader || o.header || 'Authorization';
  const wx = o.wx || (typeof globalThis !== 'undefined' ? globalThis.wx : undefined);
  if (typeof baseUrl !== 'string' || baseUrl === '') {
    throw new TypeError('createClient: baseUrl is required');
  }
  if (!wx || typeof wx.request !== 'function') {
    throw new TypeError('createClient: no `wx` object with a request() (pass opts.wx: wx, Taro or uni)');
  }
  if (typeof loginTimeout !== 'number' || !(loginTimeout > 0)) {
    throw new TypeError('createClient: loginTimeout must be a number of milliseconds over 0 (Infinity for none)');
  }
  if (defaultHeader !== undefined && !isObject(defaultHeader) && typeof defaultHeader !== 'function') {
    throw new TypeError('createClient: defaultHeader must be an object or a function returning one');
  }
  for (const [name, fn] of [['readToken', readToken], ['readError', readError], ['isRelogin', isRelogin]]) {
    if (fn !== undefined && typeof fn !== 'function') {
      throw new TypeError(`createClient: ${name} must be a function`);
    }
  }
  const base = baseUrl.replace(/\/+$/, '');
  const bearer = tokenHeader.toLowerCase() === 'authorization';

  // The one login in flight, shared by every request waiting for a token.
  let loggingIn = null;
  // Bumped by logout(): a login that started before it must not store its token.
  let generation = 0;

  function absolute(url) {
    return /^https?:\/\//i.test(url) ? url : base + (url.startsWith('/') ? url : `/${url}`);
  }

  function readStoredToken() {
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
    return { [tokenHeader]: bearer ? `Bearer ${token}` : token };
  }

  function defaults() {
    return typeof defaultHeader === 'function' ? defaultHeader() : defaultHeader;
  }

  // Calls wx[api] and settles with its outcome, whichever way the API reports
  // it: wx calls `success`/`fail`; Taro calls them and also returns a promise
  // (which rejects on fail, so it is always handled here); a promise-only API
  // resolves with the result, or with uni-app 2's `[err, res]` pair. A `fail`
  // that carries an HTTP status (PC WeChat reports some 401s so) counts as
  // that response. Without any response: a WxLoginError with `failCode`.
  function call(api, options, failCode) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ok = (res) => {
        if (settled) return;
        settled = true;
        resolve(res);
      };
      const bad = (err) => {
        if (settled) return;
        settled = true;
        if (isObject(err) && typeof err.statusCode === 'number' && err.statusCode > 0) {
          resolve(err);
          return;
        }
        reject(new WxLoginError(failCode, errText(err, `${api} failed`), { cause: err }));
      };
      let returned;
      try {
        returned = wx[api]({ ...options, success: ok, fail: bad });
      } catch (err) {
        bad(err);
        return;
      }
      if (returned && typeof returned.then === 'function') {
        returned.then(
          (value) => {
            if (Array.isArray(value) && value.length === 2) {
              if (value[0]) bad(value[0]);
              else ok(value[1]);
            } else if (isObject(value)) {
              ok(value);
            }
          },
          bad,
        );
      }
    });
  }

  // What a response says, for error checks: its body as JSON where it came as
  // text, and for a download that failed, the body the server sent (written
  // to the temp file) when the platform lets us read it.
  function viewOf(kind, res) {
    if (kind === 'downloadFile') {
      if (isSuccess(res.statusCode)) return { ...res, data: null };
      const file = res.tempFilePath || res.filePath;
      if (file && typeof wx.getFileSystemManager === 'function') {
        try {
          return { ...res, data: parseJsonText(wx.getFileSystemManager().readFileSync(file, 'utf8')) };
        } catch (_) {
          // Unreadable: judged by its status below.
        }
      }
      return { ...res, data: null, bodyUnread: true };
    }
    return typeof res.data === 'string' ? { ...res, data: parseJsonText(res.data) } : res;
  }

  // The error a response carries, or null: `readError` first (an app's
  // envelope), wxlogin's format for any non-2xx it did not claim.
  function errorOf(view) {
    let info = readError ? readError(view) : null;
    if (!info) {
      info = wxloginErrorInfo(view);
      // A download's error body that could not be read: every 401 wxlogin
      // answers asks for a new login, so take it as one.
      if (info && view.bodyUnread && view.statusCode === 401) info.relogin = true;
    }
    if (!info) return null;
    if (typeof info === 'string') info = { code: info };
    const code = String(info.code);
    return new WxLoginError(code, info.message || code, {
      status: view.statusCode,
      relogin: info.relogin === true,
      data: view.data === undefined ? null : view.data,
    });
  }

  function wxLogin(ticket) {
    const options = Number.isFinite(loginTimeout) ? { timeout: loginTimeout } : {};
    return call('login', options, 'wx_login_failed').then((res) => {
      if (ticket.abandoned) throw new WxLoginError('login_timeout', 'the login took too long');
      if (isObject(res) && typeof res.code === 'string' && res.code !== '') return res.code;
      throw new WxLoginError('wx_login_failed', 'wx.login gave no code', { data: res });
    });
  }

  function sendLogout(token) {
    return call(
      'request',
      { url: absolute(logoutPath), method: 'POST', header: mergeHeaders(defaults(), authHeader(token)) },
      'network_error',
    );
  }

  // One code exchange: wx.login, POST {code}, store the token.
  async function exchange(ticket) {
    const code = await wxLogin(ticket);
    const options = {
      url: absolute(loginPath),
      method: 'POST',
      data: appId ? { code, appid: appId } : { code },
      header: mergeHeaders(defaults(), { 'content-type': 'application/json' }),
    };
    if (Number.isFinite(loginTimeout)) options.timeout = Math.max(1, ticket.deadline - Date.now());
    const res = await call('request', options, 'network_error');
    const view = viewOf('request', res);
    const err = errorOf(view);
    if (err) throw err;
    const token = readToken(view.data, view);
    if (typeof token !== 'string' || token === '') {
      throw new WxLoginError('bad_login_response', 'the login answer has no token', {
        status: res.statusCode,
        data: view.data === undefined ? null : view.data,
      });
    }
    if (ticket.generation !== generation || ticket.abandoned) {
      // logout() ran meanwhile, or the login timed out and its callers have
      // their error: store nothing, and end the session it made.
      sendLogout(token).catch(() => {});
      if (ticket.abandoned) throw new WxLoginError('login_timeout', 'the login took too long');
      throw new WxLoginError('logged_out', 'logout() was called during the login');
    }
    writeToken(token);
    return token;
  }

  /**
   * Logs in (wx.login, then the login route) and stores the token. Calls
   * made while a login is in flight share it. A stale or reused code
   * (`invalid_code`) gets one fresh code and one more try. The whole login
   * gets `loginTimeout` ms; past that it rejects with `login_timeout` and is
   * abandoned (a session it still makes is logged out, not stored).
   */
  function login() {
    if (!loggingIn) {
      const ticket = { generation, abandoned: false, deadline: Date.now() + loginTimeout };
      const run = (async () => {
        try {
          return await exchange(ticket);
        } catch (err) {
          if (err instanceof WxLoginError && err.code === 'invalid_code' && !ticket.abandoned) {
            return exchange(ticket);
          }
          throw err;
        }
      })();
      let timer = null;
      let outcome = run;
      if (Number.isFinite(loginTimeout)) {
        // After a timeout the late outcome belongs to nobody: keep it from
        // being reported as unhandled.
        run.catch(() => {});
        outcome = Promise.race([
          run,
          new Promise((_, reject) => {
            timer = setTimeout(() => {
              ticket.abandoned = true;
              reject(new WxLoginError('login_timeout', `the login did not finish within ${loginTimeout} ms`));
            }, loginTimeout);
          }),
        ]);
      }
      loggingIn = outcome.finally(() => {
        if (timer !== null) clearTimeout(timer);
        loggingIn = null;
      });
    }
    return loggingIn;
  }

  // A token to send: the stored one, or (fresh: true) the one being fetched
  // or a new login.
  async function currentToken() {
    if (!loggingIn) {
      const token = readStoredToken();
      if (token) return { token, fresh: false };
    }
    return { token: await login(), fresh: true };
  }

  // After a relogin answer to a request sent with `used`: a fresh token,
  // logging in only if nobody has replaced `used` yet.
  function freshToken(used) {
    if (loggingIn) return loggingIn;
    const stored = readStoredToken();
    if (stored && stored !== used) return Promise.resolve(stored);
    writeToken('');
    return login();
  }

  function prepare(options, token) {
    // The caller's callbacks are not the API's (the promise replaces them),
    // and `auth` is this client's option.
    const { success, fail, complete, auth, ...rest } = options;
    return {
      ...rest,
      url: absolute(options.url),
      header: mergeHeaders(defaults(), options.header, token ? authHeader(token) : null),
    };
  }

  // request, uploadFile and downloadFile: the token, one re-login and one
  // replay on a relogin answer (never for a token that was just issued),
  // errors as WxLoginError.
  async function send(kind, options) {
    if (!isObject(options) || typeof options.url !== 'string') {
      throw new TypeError(`${kind}: options.url is required`);
    }
    if (typeof wx[kind] !== 'function') {
      throw new TypeError(`${kind}: the \`wx\` object given to createClient has no ${kind}()`);
    }
    if (options.auth === false) {
      const res = await call(kind, prepare(options, null), 'network_error');
      const err = errorOf(viewOf(kind, res));
      if (err) throw err;
      return res;
    }
    const { token, fresh } = await currentToken();
    let res = await call(kind, prepare(options, token), 'network_error');
    let view = viewOf(kind, res);
    let err = errorOf(view);
    if (err && !fresh && isRelogin(err, view)) {
      res = await call(kind, prepare(options, await freshToken(token)), 'network_error');
      view = viewOf(kind, res);
      err = errorOf(view);
    }
    if (err) throw err;
    return res;
  }

  /**
   * Sends a request with the session token (logging in first when there is
   * none); on a relogin answer logs in again (one login shared by concurrent
   * requests) and replays the request once. `auth: false` sends it without
   * a token and never logs in.
   *
   * Resolves with the API's response (`statusCode`, `data`, `header`) when it
   * carries no error; rejects with a `WxLoginError` otherwise.
   */
  function request(options) {
    return send('request', options);
  }

  /** `wx.uploadFile` with the token and the same re-login rule; `res.data` is the body text. */
  function uploadFile(options) {
    return send('uploadFile', options);
  }

  /**
   * `wx.downloadFile` with the token and the same re-login rule. An error
   * status rejects; its body is read from the temp file where the platform
   * has `getFileSystemManager`, else the error is `http_<status>`.
   */
  function downloadFile(options) {
    return send('downloadFile', options);
  }

  /**
   * Ends the session: forgets the token at once, then tells the server
   * (the logout route). Resolves `true` when the server confirmed (204),
   * `false` when there was no token or the server could not be told; it never
   * rejects, since the user is logged out on this device either way.
   */
  async function logout() {
    generation += 1;
    const token = readStoredToken();
    writeToken('');
    if (!token) return false;
    try {
      const res = await sendLogout(token);
      return isSuccess(res.statusCode);
    } catch (_) {
      return false;
    }
  }

  /**
   * Pays for an order: asks the server to create it (POST `url`, default
   * `/api/pay/orders`, with `data` such as `{product_id, quantity}`: never
   * the price or the payer, which the server decides), then calls
   * `wx.requestPayment` with the server's `payment` answer as received
   * (`timeStamp`, `nonceStr`, `package`, `signType`, `paySign`).
   *
   * Resolves `{ order, result }`: the server's answer and what
   * `wx.requestPayment` reported. The client's success is not proof of
   * payment: ask the server for the order's state (its notify route decides).
   * Rejects with `payment_cancelled` when the user cancels, `payment_failed`
   * when `wx.requestPayment` fails, `bad_payment_response` when the answer
   * has no `payment`, or the server's error (`payment_unavailable`, ...).
   */
  async function requestPayment(options) {
    const o = options || {};
    if (typeof wx.requestPayment !== 'function') {
      throw new TypeError('requestPayment: the `wx` object given to createClient has no requestPayment()');
    }
    const { url = '/api/pay/orders', data, header, timeout } = o;
    const res = await request({ url, method: 'POST', data: data === undefined ? {} : data, header, timeout });
    const order = viewOf('request', res).data;
    const p = isObject(order) ? order.payment : null;
    const fields = ['timeStamp', 'nonceStr', 'package', 'signType', 'paySign'];
    if (!isObject(p) || !fields.every((f) => typeof p[f] === 'string' && p[f] !== '')) {
      throw new WxLoginError('bad_payment_response', 'the order answer has no payment arguments', {
        status: res.statusCode,
        data: order === undefined ? null : order,
      });
    }
    const args = {};
    for (const f of fields) args[f] = p[f];
    const result = await new Promise((resolve, reject) => {
      let settled = false;
      const ok = (r) => {
        if (settled) return;
        settled = true;
        resolve(r);
      };
      const bad = (err) => {
        if (settled) return;
        settled = true;
        const text = errText(err, 'requestPayment failed');
        const code = /cancel/i.test(text) ? 'payment_cancelled' : 'payment_failed';
        reject(new WxLoginError(code, text, { data: order, cause: err }));
      };
      let returned;
      try {
        returned = wx.requestPayment({ ...args, success: ok, fail: bad });
      } catch (err) {
        bad(err);
        return;
      }
      if (returned && typeof returned.then === 'function') {
        returned.then((v) => {
          if (Array.isArray(v) && v.length === 2) {
            if (v[0]) bad(v[0]);
            else ok(v[1]);
          } else ok(v);
        }, bad);
      }
    });
    return { order, result };
  }

  return { request, uploadFile, downloadFile, login, logout, requestPayment };
}

module.exports = { createClient, WxLoginError };
