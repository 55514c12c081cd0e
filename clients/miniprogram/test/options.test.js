// The client's options against the real demo: `auth: false`, default
// headers, the token header's name, the login timeout, option checks.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');

const { createClient } = require('wxlogin-miniprogram');
const harness = require('./harness');
const { rejectsWith, waitFor, sleep } = harness;

let demo = null;
let fakeUrl = '';
let appUrl = '';

before(async () => {
  demo = await harness.startExample('demo');
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

/** The recorded headers of a request, by lower-case name. */
function lowerHeaders(recorded) {
  return Object.fromEntries(Object.entries(recorded.headers).map(([k, v]) => [k.toLowerCase(), v]));
}

test('auth: false sends no token, never logs in and is not replayed', async () => {
  const wx = makeWx();
  const api = client(wx);
  // A public request (the fake WeChat's code minting answers anyone).
  const pub = await api.request({
    url: `${fakeUrl}/_fake/wx.login`,
    method: 'POST',
    data: { openid: 'o-public' },
    auth: false,
  });
  assert.equal(pub.statusCode, 200);
  assert.equal(typeof pub.data.code, 'string');
  assert.equal(wx.loginCalls, 0);
  assert.equal(lowerHeaders(wx.requests[0]).authorization, undefined);

  // A protected route without a token: its 401 passes through, no login.
  await rejectsWith(api.request({ url: '/api/me', auth: false }), {
    code: 'missing_token',
    status: 401,
    relogin: true,
  });
  assert.equal(wx.loginCalls, 0);
  assert.equal(wx.requestsTo('/api/me'), 1, 'not replayed');

  // With a token in storage, auth: false still leaves it out.
  await api.request({ url: '/api/me' });
  const token = wx.getStorageSync('wxlogin_token');
  assert.ok(token);
  await rejectsWith(api.request({ url: '/api/me', auth: false }), { code: 'missing_token' });
  const last = wx.requests.filter((r) => r.path === '/api/me').at(-1);
  assert.equal(lowerHeaders(last).authorization, undefined);
  assert.equal(wx.getStorageSync('wxlogin_token'), token, 'the token is kept');
  assert.equal(wx.loginCalls, 1);
});

test('defaultHeader goes on every request, login and logout included; per-request headers win', async () => {
  const wx = makeWx();
  let calls = 0;
  const api = client(wx, {
    defaultHeader: () => {
      calls += 1;
      return { 'X-App-Version': '1.2.3', 'X-Call': String(calls), Authorization: 'not-the-token' };
    },
  });
  const res = await api.request({ url: '/api/me', header: { 'x-app-version': '9.9.9' } });
  assert.equal(res.data.openid, wx.openid, 'the token header is not overridden by a default');
  assert.equal(await api.logout(), true);

  const login = lowerHeaders(wx.requests.find((r) => r.path === '/wx/login'));
  const me = wx.requests.find((r) => r.path === '/api/me');
  const logout = lowerHeaders(wx.requests.find((r) => r.path === '/wx/logout'));
  assert.equal(login['x-app-version'], '1.2.3');
  assert.equal(login['content-type'], 'application/json');
  // Per-request header replaced the default, compared case-insensitively: one entry.
  assert.deepEqual(
    Object.keys(me.headers).filter((k) => k.toLowerCase() === 'x-app-version'),
    ['x-app-version'],
  );
  assert.equal(me.headers['x-app-version'], '9.9.9');
  assert.match(lowerHeaders(me).authorization, /^Bearer [A-Za-z0-9_-]{20,100}$/);
  assert.equal(logout['x-app-version'], '1.2.3');
  assert.match(logout.authorization, /^Bearer [A-Za-z0-9_-]{20,100}$/);
  // The function is called for each request (login, /api/me, logout).
  assert.equal(calls, 3);
  assert.deepEqual(
    [login['x-call'], lowerHeaders(me)['x-call'], logout['x-call']],
    ['1', '2', '3'],
  );

  // An object works too.
  const wx2 = makeWx();
  await client(wx2, { defaultHeader: { 'X-Tenant': 't1' } }).request({ url: '/api/me' });
  assert.ok(wx2.requests.every((r) => lowerHeaders(r)['x-tenant'] === 't1'));
});

test('tokenHeader sends the bare token under that name (header is its old name)', async () => {
  for (const opts of [{ tokenHeader: 'X-WX-Session' }, { header: 'X-WX-Session' }]) {
    const wx = makeWx();
    const api = client(wx, opts);
    // The demo reads Authorization only: the login works, the request is a 401.
    await rejectsWith(api.request({ url: '/api/me' }), { code: 'missing_token', status: 401 });
    const me = wx.requests.find((r) => r.path === '/api/me');
    assert.equal(me.headers['X-WX-Session'], wx.getStorageSync('wxlogin_token'));
    assert.equal(lowerHeaders(me).authorization, undefined);
  }
});

test('a login slower than loginTimeout rejects with login_timeout and is abandoned', async () => {
  const wx = makeWx();
  wx.loginDelayMs = 1500;
  const api = client(wx, { loginTimeout: 200 });
  const results = await Promise.allSettled([api.request({ url: '/api/me' }), api.request({ url: '/api/me' })]);
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.equal(r.reason.code, 'login_timeout');
  }
  assert.equal(wx.loginCalls, 1, 'one shared login');
  assert.equal(wx.requestsTo('/wx/login'), 0, 'the code had not come yet');
  // The late code is not exchanged: no session is made for nobody.
  await sleep(1800);
  assert.equal(wx.requestsTo('/wx/login'), 0);
  assert.equal(wx.getStorageSync('wxlogin_token'), '');

  // The next request logs in afresh.
  wx.loginDelayMs = 0;
  const res = await api.request({ url: '/api/me' });
  assert.equal(res.data.openid, wx.openid);
  assert.equal(wx.loginCalls, 2);
});

test('a login route slower than loginTimeout: the late session is logged out, not stored', async () => {
  // A loopback proxy in front of the demo's login route that answers 800 ms late.
  const proxy = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      await sleep(800);
      const upstream = await fetch(`${appUrl}/wx/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: Buffer.concat(chunks),
      });
      res.writeHead(upstream.status, { 'content-type': 'application/json' });
      res.end(await upstream.text());
    });
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  try {
    const wx = makeWx();
    // A platform whose request ignores `timeout` (the client's own timer must still fire).
    const request = wx.request;
    wx.request = (opts) => request({ ...opts, timeout: 15_000 });
    const api = client(wx, { loginPath: `http://127.0.0.1:${proxy.address().port}/wx/login`, loginTimeout: 300 });
    await rejectsWith(api.request({ url: '/api/me' }), { code: 'login_timeout' });
    // The login answer arrives later: its session is ended on the server.
    const logoutCall = await waitFor(() => wx.requests.find((r) => r.path === '/wx/logout'));
    const lateToken = logoutCall.headers.Authorization.replace(/^Bearer /, '');
    assert.match(lateToken, /^[A-Za-z0-9_-]{20,100}$/);
    await waitFor(async () => (await harness.rawGet(appUrl, lateToken)).status === 401);
    assert.equal((await harness.rawGet(appUrl, lateToken)).body.error, 'invalid_token');
    assert.equal(wx.getStorageSync('wxlogin_token'), '', 'nothing stored');
    assert.equal(wx.requestsTo('/api/me'), 0);
  } finally {
    proxy.close();
  }
});

test('createClient refuses bad options with a TypeError', () => {
  const wx = makeWx();
  assert.throws(() => createClient({ wx }), TypeError);
  assert.throws(() => createClient({ baseUrl: appUrl, wx: {} }), /request\(\)/);
  assert.throws(() => createClient({ baseUrl: appUrl, wx, loginTimeout: 0 }), /loginTimeout/);
  assert.throws(() => createClient({ baseUrl: appUrl, wx, loginTimeout: '5s' }), /loginTimeout/);
  assert.throws(() => createClient({ baseUrl: appUrl, wx, defaultHeader: 'x' }), /defaultHeader/);
  assert.throws(() => createClient({ baseUrl: appUrl, wx, readError: {} }), /readError/);
  assert.throws(() => createClient({ baseUrl: appUrl, wx, readToken: 'data.token' }), /readToken/);
  assert.throws(() => createClient({ baseUrl: appUrl, wx, isRelogin: true }), /isRelogin/);
  assert.doesNotThrow(() => createClient({ baseUrl: appUrl, wx, loginTimeout: Infinity }));
});

test('a method the platform lacks rejects with a TypeError, sending nothing', async () => {
  const wx = makeWx();
  delete wx.uploadFile;
  const api = client(wx);
  await assert.rejects(api.uploadFile({ url: '/api/upload', filePath: '/nonexistent', name: 'file' }), /no uploadFile/);
  await assert.rejects(api.request({}), /options\.url is required/);
  assert.equal(wx.loginCalls, 0);
  assert.equal(wx.requests.length, 0);
});
