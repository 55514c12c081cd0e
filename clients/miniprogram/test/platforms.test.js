// The client with Taro and uni-app passed as its `wx`, against the real demo.
//
// The shims wrap the harness's `wx` shim (real HTTP, real codes) the way the
// frameworks wrap `wx` in a mini-program build:
// - Taro: every async API returns a promise AND calls the callbacks; the
//   promise rejects on `fail`, and request/uploadFile/downloadFile
//   promises carry the task's `abort`.
// - uni-app: callbacks given, callback style (a task is returned); none
//   given, a promise: uni-app 3 resolves the result and rejects on fail,
//   uni-app 2 resolves `[err, res]`.
// Two more are promise-only (callbacks never called), as an app's own
// promisified wrapper would be, to show the client does not need callbacks.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const { createClient } = require('wxlogin-miniprogram');
const harness = require('./harness');
const { rejectsWith } = harness;

const STALE = 'AS-stale-token-0000000000000000000000000000000';
const ASYNC_APIS = ['request', 'login', 'uploadFile', 'downloadFile'];
const SYNC_APIS = ['getStorageSync', 'setStorageSync', 'removeStorageSync', 'getFileSystemManager'];

let demo = null;
let unhandled = 0;
const onUnhandled = () => {
  unhandled += 1;
};

before(async () => {
  demo = await harness.startExample('demo');
  process.on('unhandledRejection', onUnhandled);
});

after(() => {
  process.off('unhandledRejection', onUnhandled);
  if (demo) demo.stop();
});

function withSync(base, target) {
  for (const name of SYNC_APIS) target[name] = (...args) => base[name](...args);
  return target;
}

/** Taro in a mini-program build: promise plus callbacks (Taro's processApis). */
function makeTaro(base) {
  const taro = {};
  for (const name of ASYNC_APIS) {
    taro[name] = (options = {}) => {
      let task;
      const p = new Promise((resolve, reject) => {
        task = base[name]({
          ...options,
          success: (res) => {
            if (options.success) options.success(res);
            resolve(res);
          },
          fail: (err) => {
            if (options.fail) options.fail(err);
            reject(err);
          },
        });
      });
      if (name !== 'login') p.abort = () => task && task.abort();
      return p;
    };
  }
  return withSync(base, taro);
}

/** uni-app: callback style when a callback is given, else a promise (3: res / reject, 2: [err, res]). */
function makeUni(base, version = 3) {
  const uni = {};
  for (const name of ASYNC_APIS) {
    uni[name] = (options = {}) => {
      if (options.success || options.fail || options.complete) return base[name](options);
      return new Promise((resolve, reject) => {
        base[name]({
          ...options,
          success: (res) => resolve(version === 2 ? [null, res] : res),
          fail: (err) => (version === 2 ? resolve([err, undefined]) : reject(err)),
        });
      });
    };
  }
  return withSync(base, uni);
}

/** A promise-only wrapper: drops the callbacks and calls `api` without them. */
function promiseOnly(api) {
  const wrapped = {};
  for (const name of ASYNC_APIS) {
    wrapped[name] = (options = {}) => {
      const { success, fail, complete, ...rest } = options;
      return api[name](rest);
    };
  }
  return withSync(api, wrapped);
}

const PLATFORMS = {
  'Taro (promise and callbacks)': makeTaro,
  'Taro, promise only': (base) => promiseOnly(makeTaro(base)),
  'uni-app (callbacks)': (base) => makeUni(base, 3),
  'uni-app 3 promise style': (base) => promiseOnly(makeUni(base, 3)),
  'uni-app 2 promise style ([err, res])': (base) => promiseOnly(makeUni(base, 2)),
};

for (const [platform, make] of Object.entries(PLATFORMS)) {
  test(`${platform}: login, token, one re-login for a stale token, logout`, async () => {
    const base = harness.makeWx({ fakeUrl: demo.fakeUrl });
    const api = createClient({ baseUrl: demo.appUrl, wx: make(base) });
    const res = await api.request({ url: '/api/me' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.data.openid, base.openid);
    assert.equal(base.loginCalls, 1);
    const token = base.getStorageSync('wxlogin_token');
    assert.equal(base.requests.find((r) => r.path === '/api/me').headers.Authorization, `Bearer ${token}`);

    base.setStorageSync('wxlogin_token', STALE);
    await api.request({ url: '/api/me' });
    assert.equal(base.loginCalls, 2, 'one re-login');
    assert.equal(base.requestsTo('/api/me'), 3);

    // An error status resolves the platform's call; the client rejects with the code.
    await rejectsWith(api.request({ url: '/api/decrypt', method: 'POST', data: { encryptedData: 'AAAA', iv: '!!!' } }), {
      code: 'bad_request',
      status: 400,
    });

    assert.equal(await api.logout(), true);
    assert.equal(base.getStorageSync('wxlogin_token'), '');
    assert.equal((await harness.rawGet(demo.appUrl, base.requests.at(-1).headers.Authorization.slice(7))).status, 401);
  });

  test(`${platform}: uploadFile and downloadFile with the token`, async () => {
    const base = harness.makeWx({ fakeUrl: demo.fakeUrl });
    const api = createClient({ baseUrl: demo.appUrl, wx: make(base) });
    const bytes = crypto.randomBytes(4096);
    const file = path.join(base.tmpDir, 'photo.jpg');
    fs.writeFileSync(file, bytes);
    const up = await api.uploadFile({ url: '/api/upload', filePath: file, name: 'photo', formData: { n: '1' } });
    const body = JSON.parse(up.data);
    assert.equal(body.openid, base.openid);
    assert.equal(body.files[0].sha256, crypto.createHash('sha256').update(bytes).digest('hex'));
    assert.deepEqual(body.fields, { n: '1' });

    base.setStorageSync('wxlogin_token', STALE);
    const down = await api.downloadFile({ url: '/api/me' });
    assert.equal(JSON.parse(fs.readFileSync(down.tempFilePath, 'utf8')).openid, base.openid);
    assert.equal(base.loginCalls, 2, 'the stale token on the download: one re-login');
  });

  test(`${platform}: a failure without a response is network_error, and no rejection goes unhandled`, async () => {
    const base = harness.makeWx({ fakeUrl: demo.fakeUrl });
    base.setStorageSync('wxlogin_token', 'AS-any-token');
    // Port 9 (discard) on loopback: nothing listens there.
    const api = createClient({ baseUrl: 'http://127.0.0.1:9', wx: make(base) });
    const before = unhandled;
    await rejectsWith(api.request({ url: '/api/me' }), { code: 'network_error', status: 0 });
    await rejectsWith(api.downloadFile({ url: '/api/me' }), { code: 'network_error', status: 0 });
    // wx.login failing: wx_login_failed.
    base.login = ({ fail }) => setImmediate(() => fail({ errMsg: 'login:fail auth deny' }));
    base.removeStorageSync('wxlogin_token');
    await rejectsWith(api.login(), { code: 'wx_login_failed' });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(unhandled, before, 'the platform promises that rejected were handled');
  });
}
