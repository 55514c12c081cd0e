// Tests wxlogin.js against the running demo server over real HTTP.
//
//   node --test examples/miniprogram/test/
//
// Starts `target/debug/examples/demo` (or $WXLOGIN_DEMO_BIN) on a free
// loopback port with a 2-second session lifetime, and drives the client with
// a `wx` shim whose `request` is real HTTP (global fetch) and whose `login`
// gets a real code from the demo's fake WeChat.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { setTimeout: sleep } = require('node:timers/promises');

const { createClient, WxLoginError } = require('../wxlogin.js');

const REPO = path.resolve(__dirname, '..', '..', '..');
const SESSION_TTL_SECS = 2;
const AFTER_EXPIRY_MS = 2500;
/** The app id the demo gives its fake WeChat (examples/demo.rs). */
const DEMO_APP_ID = 'wxdemo0000000000';

let demo = null;
let fakeUrl = '';
let appUrl = '';
const demoOutput = [];

/** The demo binary: $WXLOGIN_DEMO_BIN, or built (a no-op when up to date). */
function demoBinary() {
  if (process.env.WXLOGIN_DEMO_BIN) {
    return path.resolve(process.env.WXLOGIN_DEMO_BIN);
  }
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(REPO, process.env.CARGO_TARGET_DIR)
    : path.join(REPO, 'target');
  const bin = path.join(targetDir, 'debug', 'examples', process.platform === 'win32' ? 'demo.exe' : 'demo');
  // Always ask cargo: a stale binary would test old code, and an up-to-date
  // one costs a second. Output goes to stderr so the test report stays clean.
  execFileSync('cargo', ['build', '--example', 'demo'], { cwd: REPO, stdio: ['ignore', process.stderr, process.stderr] });
  assert.ok(fs.existsSync(bin), `cargo built no demo at ${bin}`);
  return bin;
}

/** Starts the demo and waits for both addresses on its stdout. */
function startDemo(bin) {
  return new Promise((resolve, reject) => {
    const env = {
      ...process.env,
      WXLOGIN_BIND: '127.0.0.1:0',
      WXLOGIN_SESSION_TTL: String(SESSION_TTL_SECS),
      RUST_LOG: process.env.RUST_LOG || 'warn',
    };
    // Real credentials in the environment would disable the fake WeChat.
    delete env.WX_APPID;
    delete env.WX_SECRET;
    delete env.WXLOGIN_REDIS_URL;
    const child = spawn(bin, [], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    demo = child;
    const timer = setTimeout(() => {
      reject(new Error(`the demo did not print its addresses within 60 s:\n${demoOutput.join('\n')}`));
    }, 60_000);
    const onLine = (line) => {
      demoOutput.push(line);
      if (demoOutput.length > 200) demoOutput.shift();
      let m = /^fake wechat on (\S+)/.exec(line);
      if (m) fakeUrl = m[1];
      m = /^listening on (http:\/\/\S+)/.exec(line);
      if (m) appUrl = m[1];
      if (fakeUrl && appUrl) {
        clearTimeout(timer);
        resolve();
      }
    };
    // Keep draining both pipes for the whole run, or the demo would block on a full pipe.
    readline.createInterface({ input: child.stdout }).on('line', onLine);
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      demoOutput.push(line);
      if (demoOutput.length > 200) demoOutput.shift();
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      if (!(fakeUrl && appUrl)) {
        clearTimeout(timer);
        reject(new Error(`the demo exited (${code ?? signal}) before listening:\n${demoOutput.join('\n')}`));
      }
    });
  });
}

before(async () => {
  await startDemo(demoBinary());
});

after(() => {
  if (demo && demo.exitCode === null) demo.kill();
});

process.on('exit', () => {
  if (demo && demo.exitCode === null) demo.kill();
});

let shimCount = 0;

/**
 * A `wx` object for Node: `request` is real HTTP, `login` mints a real code
 * from the fake WeChat (one openid per shim), storage is a Map. Counts every
 * wx.login call and every request by path.
 */
function makeWx({ openid, codes } = {}) {
  shimCount += 1;
  const shim = {
    openid: openid || `o-node-${process.pid}-${shimCount}-${Date.now()}`,
    storage: new Map(),
    loginCalls: 0,
    requests: [], // { method, path, headers }
    /** Codes to hand out instead of minting (e.g. a bogus one), first in first out. */
    scriptedCodes: codes ? [...codes] : [],

    getStorageSync(key) {
      return shim.storage.has(key) ? shim.storage.get(key) : '';
    },
    setStorageSync(key, value) {
      shim.storage.set(key, value);
    },
    removeStorageSync(key) {
      shim.storage.delete(key);
    },

    login({ success, fail }) {
      shim.loginCalls += 1;
      if (shim.scriptedCodes.length > 0) {
        const code = shim.scriptedCodes.shift();
        setImmediate(() => success({ code, errMsg: 'login:ok' }));
        return;
      }
      fetch(`${fakeUrl}/_fake/wx.login`, {
        method: 'POST',
        body: JSON.stringify({ openid: shim.openid }),
      })
        .then(async (res) => {
          const body = await res.json();
          if (res.status !== 200 || typeof body.code !== 'string') {
            throw new Error(`fake wx.login answered ${res.status} ${JSON.stringify(body)}`);
          }
          success({ code: body.code, errMsg: 'login:ok' });
        })
        .catch((err) => fail({ errMsg: `login:fail ${err.message}` }));
    },

    // Like wx.request: `success` for any HTTP status, `fail` only without a
    // response; JSON bodies parsed into `data` (dataType 'json'), objects
    // sent as JSON (or as a query string on GET).
    request({ url, method = 'GET', data, header = {}, timeout = 15_000, success, fail }) {
      const headers = { ...header };
      let body;
      let target = url;
      if (data !== undefined && data !== null) {
        if (method.toUpperCase() === 'GET') {
          const qs = new URLSearchParams(data).toString();
          if (qs) target += (target.includes('?') ? '&' : '?') + qs;
        } else {
          body = typeof data === 'string' ? data : JSON.stringify(data);
          if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
            headers['content-type'] = 'application/json';
          }
        }
      }
      shim.requests.push({
        method: method.toUpperCase(),
        path: new URL(target).pathname,
        headers,
        body: body === undefined ? undefined : JSON.parse(body),
      });
      fetch(target, { method, headers, body, signal: AbortSignal.timeout(timeout) })
        .then(async (res) => {
          const text = await res.text();
          let parsed = text;
          try {
            parsed = text === '' ? '' : JSON.parse(text);
          } catch (_) {
            // Not JSON: wx.request hands over the text.
          }
          success({
            statusCode: res.status,
            data: parsed,
            header: Object.fromEntries(res.headers),
            errMsg: 'request:ok',
          });
        })
        .catch((err) => fail({ errMsg: `request:fail ${err.message}` }));
    },

    requestsTo(p) {
      return shim.requests.filter((r) => r.path === p).length;
    },
  };
  return shim;
}

function client(wx, opts = {}) {
  return createClient({ baseUrl: appUrl, wx, ...opts });
}

/** GET /api/me with a token, bypassing the client: the server's own answer. */
async function rawMe(token) {
  const res = await fetch(`${appUrl}/api/me`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.json() };
}

/** Polls `check` (sync or async) until it returns something truthy, for up to 10 s. */
async function waitFor(check) {
  for (let i = 0; i < 200; i++) {
    const value = await check();
    if (value) return value;
    await sleep(50);
  }
  throw new Error('timed out waiting');
}

async function rejectsWith(promise, expected) {
  let err = null;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'expected a rejection');
  assert.ok(err instanceof WxLoginError, `expected a WxLoginError, got ${err}`);
  for (const [k, v] of Object.entries(expected)) {
    assert.equal(err[k], v, `error.${k} (error: ${err.code} ${err.status} ${err.message})`);
  }
  return err;
}

test('a first request without a token logs in and reaches /api/me as the shim user', async () => {
  const wx = makeWx();
  const api = client(wx);
  assert.equal(wx.getStorageSync('wxlogin_token'), '');

  const res = await api.request({ url: '/api/me' });
  assert.equal(res.statusCode, 200);
  assert.equal(res.data.openid, wx.openid);
  assert.equal(res.data.unionid, null);
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.requestsTo('/wx/login'), 1);
  assert.equal(wx.requestsTo('/api/me'), 1, 'no token, so no doomed first request');

  // The token is stored, sent as a Bearer token, and good on its own.
  const token = wx.getStorageSync('wxlogin_token');
  assert.match(token, /^[A-Za-z0-9_-]{20,100}$/);
  const me = wx.requests.find((r) => r.path === '/api/me');
  assert.equal(me.headers.Authorization, `Bearer ${token}`);
  assert.deepEqual(await rawMe(token), { status: 200, body: res.data });

  // The next request reuses it: no new login.
  const again = await api.request({ url: '/api/me' });
  assert.equal(again.data.openid, wx.openid);
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.getStorageSync('wxlogin_token'), token);
});

test('an expired session is renewed transparently, once', async () => {
  const wx = makeWx();
  const api = client(wx);
  await api.request({ url: '/api/me' });
  const oldToken = wx.getStorageSync('wxlogin_token');
  assert.equal(wx.loginCalls, 1);

  await sleep(AFTER_EXPIRY_MS);
  const stale = await rawMe(oldToken);
  assert.equal(stale.status, 401);
  assert.equal(stale.body.error, 'session_expired');
  assert.equal(stale.body.relogin, true);

  const res = await api.request({ url: '/api/me' });
  assert.equal(res.statusCode, 200);
  assert.equal(res.data.openid, wx.openid);
  assert.equal(wx.loginCalls, 2, 'exactly one re-login');
  // /api/me: the first call, the expired attempt, and the replay.
  assert.equal(wx.requestsTo('/api/me'), 3);
  const newToken = wx.getStorageSync('wxlogin_token');
  assert.notEqual(newToken, oldToken);
  assert.equal((await rawMe(newToken)).status, 200);
});

test('10 concurrent requests after expiry share one re-login', async () => {
  const wx = makeWx();
  const api = client(wx);
  await api.request({ url: '/api/me' });
  assert.equal(wx.loginCalls, 1);

  await sleep(AFTER_EXPIRY_MS);
  const results = await Promise.all(Array.from({ length: 10 }, () => api.request({ url: '/api/me' })));
  for (const res of results) {
    assert.equal(res.statusCode, 200);
    assert.equal(res.data.openid, wx.openid);
  }
  assert.equal(wx.loginCalls, 2, 'one wx.login for all ten');
  assert.equal(wx.requestsTo('/wx/login'), 2);
  // The first call, then each of the ten twice: the expired try and one replay.
  assert.equal(wx.requestsTo('/api/me'), 1 + 20);
});

test('concurrent first requests share one login', async () => {
  const wx = makeWx();
  const api = client(wx);
  const results = await Promise.all(Array.from({ length: 5 }, () => api.request({ url: '/api/me' })));
  assert.ok(results.every((r) => r.statusCode === 200 && r.data.openid === wx.openid));
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.requestsTo('/api/me'), 5);
});

test('logout ends the session on the server; the next request logs in again', async () => {
  const wx = makeWx();
  const api = client(wx);
  await api.request({ url: '/api/me' });
  const oldToken = wx.getStorageSync('wxlogin_token');

  assert.equal(await api.logout(), true, 'the server confirmed the logout');
  assert.equal(wx.getStorageSync('wxlogin_token'), '');
  const logout = wx.requests.find((r) => r.path === '/wx/logout');
  assert.equal(logout.method, 'POST');
  assert.equal(logout.headers.Authorization, `Bearer ${oldToken}`);
  const gone = await rawMe(oldToken);
  assert.equal(gone.status, 401);
  assert.equal(gone.body.error, 'invalid_token');

  const res = await api.request({ url: '/api/me' });
  assert.equal(res.data.openid, wx.openid);
  assert.equal(wx.loginCalls, 2);
  assert.notEqual(wx.getStorageSync('wxlogin_token'), oldToken);

  // Logging out without a token does not call the server.
  assert.equal(await api.logout(), true);
  assert.equal(await api.logout(), false);
  assert.equal(wx.requestsTo('/wx/logout'), 2);
});

test('logout during a login wins: the login does not store its token', async () => {
  const wx = makeWx();
  const api = client(wx);
  const pending = api.request({ url: '/api/me' }); // starts a login (no token yet)
  assert.equal(await api.logout(), false, 'nothing to tell the server yet');
  await rejectsWith(pending, { code: 'logged_out' });
  assert.equal(wx.getStorageSync('wxlogin_token'), '');
  assert.equal(wx.requestsTo('/api/me'), 0);
  // The session the login made is ended on the server as well.
  const logoutCall = await waitFor(() => wx.requests.find((r) => r.path === '/wx/logout'));
  const orphan = logoutCall.headers.Authorization.replace(/^Bearer /, '');
  await waitFor(async () => (await rawMe(orphan)).status === 401);
  assert.equal((await rawMe(orphan)).body.error, 'invalid_token');
});

test('a revoked token held in storage is replaced by one re-login', async () => {
  const wx = makeWx();
  wx.setStorageSync('wxlogin_token', 'AS-not-a-real-token-at-all-0000000000000000000');
  const api = client(wx);
  const res = await api.request({ url: '/api/me' });
  assert.equal(res.data.openid, wx.openid);
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.requestsTo('/api/me'), 2);
});

test('a non-relogin error from a protected route passes through with its code', async () => {
  const wx = makeWx();
  const api = client(wx);
  // The demo's /api/decrypt answers 400 bad_request (relogin: false) for an IV that is not base64.
  const err = await rejectsWith(
    api.request({ url: '/api/decrypt', method: 'POST', data: { encryptedData: 'AAAA', iv: '!!!' } }),
    { code: 'bad_request', status: 400, relogin: false },
  );
  assert.equal(err.data.error, 'bad_request');
  assert.equal(typeof err.message, 'string');
  assert.equal(wx.loginCalls, 1, 'the first login only; a 400 is no reason to log in again');
  assert.equal(wx.requestsTo('/api/decrypt'), 1, 'not replayed');
});

test('a login route error passes through, and a failing re-login rejects every waiter', async () => {
  const wx = makeWx();
  // Start with a stale token so that all five requests hit 401 and wait for one re-login...
  wx.setStorageSync('wxlogin_token', 'AS-stale-token-0000000000000000000000000000000');
  // ...on a login route that does not exist (a bad absolute loginPath: the
  // fake WeChat answers 404 with a text body).
  const api = client(wx, { loginPath: `${fakeUrl}/wx/no-such-login` });
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => api.request({ url: '/api/me' })));
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.ok(r.reason instanceof WxLoginError);
    assert.equal(r.reason.code, 'http_404');
    assert.equal(r.reason.status, 404);
    assert.equal(r.reason.relogin, false);
  }
  assert.equal(wx.loginCalls, 1, 'one shared login attempt');
  assert.equal(wx.requestsTo('/wx/no-such-login'), 1);
  assert.equal(wx.getStorageSync('wxlogin_token'), '', 'the stale token is dropped');
  assert.equal(wx.requestsTo('/api/me'), 5, 'nothing replayed without a token');
});

test('a login route that itself answers 401 relogin does not loop', async () => {
  const wx = makeWx();
  // The demo's layer also wraps unknown paths, so this "login route" answers
  // 401 missing_token with relogin: true.
  const api = client(wx, { loginPath: '/wx/no-such-login' });
  await rejectsWith(api.request({ url: '/api/me' }), { code: 'missing_token', status: 401, relogin: true });
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.requestsTo('/wx/no-such-login'), 1);
  assert.equal(wx.requestsTo('/api/me'), 0);
});

test('a login refused by the server passes through with its code', async () => {
  // An over-long code is a malformed login request: 400 bad_request, relogin false.
  const wx = makeWx({ codes: ['x'.repeat(300)] });
  const api = client(wx);
  await rejectsWith(api.request({ url: '/api/me' }), { code: 'bad_request', status: 400, relogin: false });
  await rejectsWith(
    (async () => {
      wx.scriptedCodes.push('y'.repeat(300));
      return api.login();
    })(),
    { code: 'bad_request', status: 400 },
  );
  assert.equal(wx.loginCalls, 2);
  assert.equal(wx.requestsTo('/api/me'), 0, 'no token, no request');
});

test('a stale login code (invalid_code) gets one fresh code', async () => {
  const wx = makeWx({ codes: ['0a3Xk2ll2g7tQe4KmJml2Ck0Xb1Xk2lO'] }); // unknown to the fake: 40029
  const api = client(wx);
  const res = await api.request({ url: '/api/me' });
  assert.equal(res.data.openid, wx.openid);
  assert.equal(wx.loginCalls, 2);
  assert.equal(wx.requestsTo('/wx/login'), 2);

  // Two bad codes in a row: the error passes through, no third try.
  const wx2 = makeWx({ codes: ['bogus-code-1', 'bogus-code-2'] });
  await rejectsWith(client(wx2).login(), { code: 'invalid_code', status: 400, relogin: true });
  assert.equal(wx2.loginCalls, 2);
});

test('a replay that gets 401 again is rejected, not retried', async () => {
  const wx = makeWx();
  wx.setStorageSync('wxlogin_token', 'AS-stale-token-0000000000000000000000000000000');
  // The demo reads `Authorization: Bearer`; a client sending X-WX-Session is
  // never authenticated, however often it logs in.
  const api = client(wx, { header: 'X-WX-Session' });
  await rejectsWith(api.request({ url: '/api/me' }), { code: 'missing_token', status: 401, relogin: true });
  assert.equal(wx.loginCalls, 1, 'one re-login');
  assert.equal(wx.requestsTo('/api/me'), 2, 'the request and one replay');
  const replay = wx.requests.filter((r) => r.path === '/api/me')[1];
  assert.equal(replay.headers['X-WX-Session'], wx.getStorageSync('wxlogin_token'), 'the bare token in the custom header');

  // The next call again logs in at most once and sends at most twice.
  await rejectsWith(api.request({ url: '/api/me' }), { code: 'missing_token', status: 401 });
  assert.equal(wx.loginCalls, 2);
  assert.equal(wx.requestsTo('/api/me'), 4);

  // A call that had to log in first (no token) is not retried at all: its
  // token was just issued, so a 401 on it is final.
  wx.removeStorageSync('wxlogin_token');
  await rejectsWith(api.request({ url: '/api/me' }), { code: 'missing_token', status: 401 });
  assert.equal(wx.loginCalls, 3);
  assert.equal(wx.requestsTo('/api/me'), 5);
});

test('appId names the mini program in the login body', async () => {
  const wx = makeWx();
  const api = client(wx, { appId: DEMO_APP_ID });
  const res = await api.request({ url: '/api/me' });
  assert.equal(res.data.openid, wx.openid);
  assert.deepEqual(Object.keys(wx.requests.find((r) => r.path === '/wx/login').body).sort(), ['appid', 'code']);

  // An app the server does not serve is a client bug: bad_request, passed through.
  const other = makeWx();
  await rejectsWith(client(other, { appId: 'wx-not-served-here' }).login(), {
    code: 'bad_request',
    status: 400,
    relogin: false,
  });
  assert.equal(other.getStorageSync('wxlogin_token'), '');
});

test('a network failure rejects with network_error', async () => {
  const wx = makeWx();
  wx.setStorageSync('wxlogin_token', 'AS-any-token');
  // Port 9 (discard) on loopback: nothing listens there.
  const api = createClient({ baseUrl: 'http://127.0.0.1:9', wx });
  await rejectsWith(api.request({ url: '/api/me' }), { code: 'network_error', status: 0 });
  assert.equal(wx.loginCalls, 0);
});

test('wx.login failing rejects with wx_login_failed', async () => {
  const wx = makeWx();
  wx.login = ({ fail }) => {
    wx.loginCalls += 1;
    setImmediate(() => fail({ errMsg: 'login:fail auth deny' }));
  };
  const api = client(wx);
  const err = await rejectsWith(api.request({ url: '/api/me' }), { code: 'wx_login_failed' });
  assert.match(err.message, /auth deny/);
  assert.equal(wx.requestsTo('/wx/login'), 0);
});
