// uploadFile and downloadFile against the real demo: the token goes with
// them, an expired session is renewed once, errors pass through.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const { createClient } = require('wxlogin-miniprogram');
const harness = require('./harness');
const { rejectsWith, sleep } = harness;

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

/** A local file of random bytes in the shim's temp dir, and its SHA-256. */
function localFile(wx, name, size) {
  const bytes = crypto.randomBytes(size);
  const file = path.join(wx.tmpDir, name);
  fs.writeFileSync(file, bytes);
  return { file, sha256: crypto.createHash('sha256').update(bytes).digest('hex') };
}

test('uploadFile logs in first, sends the token, and the server gets the file and fields', async () => {
  const wx = makeWx();
  const api = client(wx);
  const { file, sha256 } = localFile(wx, 'avatar.png', 20_000);
  const res = await api.uploadFile({ url: '/api/upload', filePath: file, name: 'file', formData: { purpose: 'avatar' } });
  assert.equal(res.statusCode, 200);
  assert.equal(typeof res.data, 'string', 'uploadFile gives the body as text, as wx.uploadFile does');
  const body = JSON.parse(res.data);
  assert.equal(body.openid, wx.openid);
  assert.deepEqual(body.fields, { purpose: 'avatar' });
  assert.deepEqual(body.files, [{ field: 'file', file_name: 'avatar.png', size: 20_000, sha256 }]);
  assert.equal(wx.loginCalls, 1);
  const upload = wx.requests.find((r) => r.api === 'uploadFile');
  assert.equal(upload.headers.Authorization, `Bearer ${wx.getStorageSync('wxlogin_token')}`);
});

test('uploadFile after expiry logs in once and uploads again', async () => {
  const wx = makeWx();
  const api = client(wx);
  await api.request({ url: '/api/me' });
  await sleep(AFTER_EXPIRY_MS);
  const { file, sha256 } = localFile(wx, 'doc.bin', 1000);
  const res = await api.uploadFile({ url: '/api/upload', filePath: file, name: 'doc' });
  assert.equal(JSON.parse(res.data).files[0].sha256, sha256);
  assert.equal(wx.loginCalls, 2, 'one re-login');
  assert.equal(wx.requestsTo('/api/upload'), 2, 'the expired try and one replay');
});

test('uploadFile errors pass through with the server code', async () => {
  const wx = makeWx();
  const api = client(wx);
  const { file } = localFile(wx, 'x.txt', 10);
  // Without a token (auth: false) the layer answers 401: passed through, no login.
  const err = await rejectsWith(api.uploadFile({ url: '/api/upload', filePath: file, name: 'file', auth: false }), {
    code: 'missing_token',
    status: 401,
    relogin: true,
  });
  assert.equal(err.data.error, 'missing_token', 'the text body read as JSON');
  assert.equal(wx.loginCalls, 0);
  // A file the platform cannot read: no response, network_error.
  await rejectsWith(api.uploadFile({ url: '/api/upload', filePath: path.join(wx.tmpDir, 'missing'), name: 'file' }), {
    code: 'network_error',
    status: 0,
  });
});

test('downloadFile sends the token and saves the body', async () => {
  const wx = makeWx();
  const api = client(wx);
  const res = await api.downloadFile({ url: '/api/me' });
  assert.equal(res.statusCode, 200);
  const saved = JSON.parse(fs.readFileSync(res.tempFilePath, 'utf8'));
  assert.equal(saved.openid, wx.openid);
  assert.equal(wx.loginCalls, 1);
  const download = wx.requests.find((r) => r.api === 'downloadFile');
  assert.equal(download.headers.Authorization, `Bearer ${wx.getStorageSync('wxlogin_token')}`);

  // filePath: saved there.
  const target = path.join(wx.tmpDir, 'me.json');
  const res2 = await api.downloadFile({ url: '/api/me', filePath: target });
  assert.equal(res2.filePath, target);
  assert.equal(JSON.parse(fs.readFileSync(target, 'utf8')).openid, wx.openid);
});

test('downloadFile after expiry logs in once; the error body is read from the temp file', async () => {
  const wx = makeWx();
  const api = client(wx);
  await api.request({ url: '/api/me' });
  await sleep(AFTER_EXPIRY_MS);
  const res = await api.downloadFile({ url: '/api/me' });
  assert.equal(JSON.parse(fs.readFileSync(res.tempFilePath, 'utf8')).openid, wx.openid);
  assert.equal(wx.loginCalls, 2);
  assert.equal(wx.requestsTo('/api/me'), 3, 'request, expired download, replay');

  // The code of a download's error comes from the body the server sent.
  await rejectsWith(api.downloadFile({ url: '/api/me', auth: false }), {
    code: 'missing_token',
    status: 401,
    relogin: true,
  });
});

test('without getFileSystemManager a download 401 still means log in again', async () => {
  const wx = makeWx();
  delete wx.getFileSystemManager;
  wx.setStorageSync('wxlogin_token', 'AS-stale-token-0000000000000000000000000000000');
  const api = client(wx);
  const res = await api.downloadFile({ url: '/api/me' });
  assert.equal(JSON.parse(fs.readFileSync(res.tempFilePath, 'utf8')).openid, wx.openid);
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.requestsTo('/api/me'), 2);
  // Its code is then only the status.
  await rejectsWith(api.downloadFile({ url: '/api/me', auth: false }), { code: 'http_401', status: 401, relogin: true });
  // Any other error status is not a login matter.
  await rejectsWith(api.downloadFile({ url: `${fakeUrl}/no-such-file` }), { code: 'http_404', status: 404, relogin: false });
  assert.equal(wx.loginCalls, 1);
});
