// The client against an app's own `{code, msg, data}` envelope: the
// envelope example (examples/envelope.rs) serving, once with HTTP statuses
// kept and once answering every error with HTTP 200.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { createClient } = require('wxlogin-miniprogram');
const harness = require('./harness');
const { rejectsWith, sleep } = harness;

const SESSION_TTL_SECS = 2;
const AFTER_EXPIRY_MS = 2500;
const STALE = 'AS-stale-token-0000000000000000000000000000000';

let kept = null; // WXLOGIN_ENVELOPE_STATUS=kept
let always200 = null; // WXLOGIN_ENVELOPE_STATUS=200

before(async () => {
  const env = { WXLOGIN_SESSION_TTL: String(SESSION_TTL_SECS) };
  [kept, always200] = await Promise.all([
    harness.startExample('envelope', { ...env, WXLOGIN_ENVELOPE_STATUS: 'kept' }),
    harness.startExample('envelope', { ...env, WXLOGIN_ENVELOPE_STATUS: '200' }),
  ]);
});

after(() => {
  for (const example of [kept, always200]) if (example) example.stop();
});

/** The options for this envelope, as docs/miniprogram.md shows them. */
const envelope = {
  // {"code": 0, "msg": "ok", "data": {"token", ...}}
  readToken: (data) => (data && data.code === 0 && data.data ? data.data.token : undefined),
  // {"code": 40101, "msg": "...", "data": {"error": "missing_token", "relogin": true}}
  readError: (res) => {
    const body = res.data;
    if (body && typeof body === 'object' && typeof body.code === 'number' && body.code !== 0) {
      const data = body.data && typeof body.data === 'object' ? body.data : {};
      return {
        code: typeof data.error === 'string' ? data.error : String(body.code),
        message: body.msg,
        relogin: data.relogin === true,
      };
    }
    return null;
  },
};

/** With every error at HTTP 200 only the business code tells a re-login answer. */
const RELOGIN_CODES = [40101, 40102, 40103];
const envelope200 = {
  ...envelope,
  isRelogin: (err) => RELOGIN_CODES.includes(err.data && err.data.code),
};

function makeWx(example, opts = {}) {
  return harness.makeWx({ fakeUrl: example.fakeUrl, ...opts });
}

function client(example, wx, opts = {}) {
  return createClient({ baseUrl: example.appUrl, wx, ...opts });
}

test('without the envelope options the login answer is refused (the reported failure)', async () => {
  const wx = makeWx(kept);
  const err = await rejectsWith(client(kept, wx).request({ url: '/api/me' }), {
    code: 'bad_login_response',
    status: 200,
  });
  assert.equal(err.data.code, 0, 'the token is inside data');
  assert.equal(typeof err.data.data.token, 'string');
});

test('readToken reads the token inside the envelope; requests carry it', async () => {
  const wx = makeWx(kept);
  const api = client(kept, wx, envelope);
  const res = await api.request({ url: '/api/me' });
  assert.equal(res.statusCode, 200);
  assert.equal(res.data.code, 0);
  assert.equal(res.data.data.openid, wx.openid);
  const token = wx.getStorageSync('wxlogin_token');
  assert.match(token, /^[A-Za-z0-9_-]{20,100}$/);
  assert.equal((await harness.rawGet(kept.appUrl, token)).body.data.openid, wx.openid);
  assert.equal(wx.loginCalls, 1);
  assert.equal(await api.logout(), true);
  assert.equal((await harness.rawGet(kept.appUrl, token)).body.data.error, 'invalid_token');
});

test('statuses kept: an expired session and a stale token each get one re-login and one replay', async () => {
  const wx = makeWx(kept);
  const api = client(kept, wx, envelope);
  await api.request({ url: '/api/me' });
  await sleep(AFTER_EXPIRY_MS);
  const raw = await harness.rawGet(kept.appUrl, wx.getStorageSync('wxlogin_token'));
  assert.deepEqual([raw.status, raw.body.code, raw.body.data.error], [401, 40103, 'session_expired']);

  const res = await api.request({ url: '/api/me' });
  assert.equal(res.data.data.openid, wx.openid);
  assert.equal(wx.loginCalls, 2);
  assert.equal(wx.requestsTo('/api/me'), 3);

  const wx2 = makeWx(kept);
  wx2.setStorageSync('wxlogin_token', STALE);
  const again = await client(kept, wx2, envelope).request({ url: '/api/me' });
  assert.equal(again.data.data.openid, wx2.openid);
  assert.equal(wx2.loginCalls, 1);
  assert.equal(wx2.requestsTo('/api/me'), 2);
});

test('statuses kept: other errors pass through with the crate code and the app envelope', async () => {
  // A malformed login (an over-long code): 400, code 40001, relogin false, no retry.
  const wx = makeWx(kept, { codes: ['x'.repeat(300)] });
  const err = await rejectsWith(client(kept, wx, envelope).request({ url: '/api/me' }), {
    code: 'bad_request',
    status: 400,
    relogin: false,
  });
  assert.equal(err.data.code, 40001);
  assert.equal(typeof err.message, 'string');
  assert.equal(wx.loginCalls, 1);

  // A stale code (invalid_code, 40002) still gets one fresh code through the envelope.
  const wx2 = makeWx(kept, { codes: ['0a3Xk2ll2g7tQe4KmJml2Ck0Xb1Xk2lO'] });
  const res = await client(kept, wx2, envelope).request({ url: '/api/me' });
  assert.equal(res.data.data.openid, wx2.openid);
  assert.equal(wx2.loginCalls, 2);
});

test('every error at HTTP 200: readError finds it, isRelogin by business code renews the session', async () => {
  // The default isRelogin wants a 401: at HTTP 200 the error passes through.
  const wx = makeWx(always200);
  wx.setStorageSync('wxlogin_token', STALE);
  const err = await rejectsWith(client(always200, wx, envelope).request({ url: '/api/me' }), {
    code: 'invalid_token',
    status: 200,
    relogin: true,
  });
  assert.equal(err.data.code, 40102);
  assert.equal(wx.loginCalls, 0);

  // With the app's codes: one re-login, one replay.
  const wx2 = makeWx(always200);
  wx2.setStorageSync('wxlogin_token', STALE);
  const api = client(always200, wx2, envelope200);
  const res = await api.request({ url: '/api/me' });
  assert.equal(res.data.data.openid, wx2.openid);
  assert.equal(wx2.loginCalls, 1);
  assert.equal(wx2.requestsTo('/api/me'), 2);

  // Expiry, the same.
  await sleep(AFTER_EXPIRY_MS);
  const raw = await harness.rawGet(always200.appUrl, wx2.getStorageSync('wxlogin_token'));
  assert.deepEqual([raw.status, raw.body.code], [200, 40103]);
  await api.request({ url: '/api/me' });
  assert.equal(wx2.loginCalls, 2);
  assert.equal(wx2.requestsTo('/api/me'), 4);
});

test('every error at HTTP 200: a failing login rejects with its code, and nothing loops', async () => {
  const wx = makeWx(always200, { codes: ['0d6An5oo5j0wTh7NpMpo5Fn3Ae4An5oR', '0e7Bo6pp6k1xUi8OqNqp6Go4Bf5Bo6pS'] }); // unknown to the fake: 40029 twice
  const api = client(always200, wx, envelope200);
  const err = await rejectsWith(api.request({ url: '/api/me' }), {
    code: 'invalid_code',
    status: 200,
    relogin: true,
  });
  assert.equal(err.data.code, 40002);
  assert.equal(wx.loginCalls, 2, 'one fresh code, no third');
  assert.equal(wx.requestsTo('/api/me'), 0);
  assert.equal(wx.getStorageSync('wxlogin_token'), '');
});
