// Tests the client against the running demo server over real HTTP.
//
//   node --test clients/miniprogram/test/
//
// Starts `target/debug/examples/demo` (or $WXLOGIN_DEMO_BIN) on a free
// loopback port with a 2-second session lifetime, and drives the client with
// a `wx` shim whose `request` is real HTTP (global fetch) and whose `login`
// gets a real code from the demo's fake WeChat (test/harness.js).

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

// By its package name: Node resolves it through package.json `exports`, as an app would.
const { createClient, WxLoginError } = require('wxlogin-miniprogram');
const harness = require('./harness');
const { DEMO_APP_ID, rejectsWith, waitFor, sleep } = harness;

const SESSION_TTL_SECS = 2;
const AFTER_EXPIRY_MS = 2500;

let demo = null;
let fakeUrl = '';
let appUrl = '';

before(async () => {
  demo = await harness.startExample('demo', { WXLOGIN_SESSION_TTL: String(SESSION_TTL_SECS) });
  ({ fakeUrl, appUrl } = demo);
});

after(() => {
  if (demo) demo.stop();
});

function makeWx(opts = {}) {
  return harness.makeWx({ fakeUrl, ...opts });
}

function client(wx, opts = {}) {
  return createClient({ baseUrl: appUrl, wx, ...opts });
}

/** GET /api/me with a token, bypassing the client: the server's own answer. */
function rawMe(token) {
  return harness.rawGet(appUrl, token);
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
  const wx2 = makeWx({ codes: ['0b4Yl3mm3h8uRf5LnKnm3Dl1Yc2Yl3mP', '0c5Zm4nn4i9vSg6MoLon4Em2Zd3Zm4nQ'] }); // unknown: 40029 twice
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
