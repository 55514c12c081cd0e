// Test harness: starts one of the crate's examples (the demo, the envelope
// example) as a real process on a free loopback port, and builds `wx`
// shims for Node whose request/uploadFile/downloadFile are real HTTP and
// whose login mints a real code from the example's fake WeChat.

'use strict';

const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { setTimeout: sleep } = require('node:timers/promises');

const { WxLoginError } = require('wxlogin-miniprogram');

const REPO = path.resolve(__dirname, '..', '..', '..');
/** The app id the examples give their fake WeChat (examples/demo.rs, examples/envelope.rs). */
const DEMO_APP_ID = 'wxdemo0000000000';

/** The example's binary: $WXLOGIN_<NAME>_BIN, or built (a no-op when up to date). */
function exampleBinary(name) {
  const override = process.env[`WXLOGIN_${name.toUpperCase()}_BIN`];
  if (override) return path.resolve(override);
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(REPO, process.env.CARGO_TARGET_DIR)
    : path.join(REPO, 'target');
  const bin = path.join(targetDir, 'debug', 'examples', process.platform === 'win32' ? `${name}.exe` : name);
  // Always ask cargo: a stale binary would test old code, and an up-to-date
  // one costs a second. Output goes to stderr so the test report stays clean.
  execFileSync('cargo', ['build', '--example', name], {
    cwd: REPO,
    stdio: ['ignore', process.stderr, process.stderr],
  });
  assert.ok(fs.existsSync(bin), `cargo built no ${name} at ${bin}`);
  return bin;
}

/**
 * Starts an example (`demo`, `envelope`) with `env` added, and waits for its
 * two address lines. Resolves with `{ appUrl, fakeUrl, output, stop }`; the
 * process is killed at exit in any case.
 */
function startExample(name, env = {}) {
  const bin = exampleBinary(name);
  return new Promise((resolve, reject) => {
    const fullEnv = {
      ...process.env,
      WXLOGIN_BIND: '127.0.0.1:0',
      RUST_LOG: process.env.RUST_LOG || 'warn',
      ...env,
    };
    // Real credentials in the environment would disable the fake WeChat.
    delete fullEnv.WX_APPID;
    delete fullEnv.WX_SECRET;
    delete fullEnv.WXLOGIN_REDIS_URL;
    const child = spawn(bin, [], { cwd: REPO, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const output = [];
    let fakeUrl = '';
    let appUrl = '';
    const stop = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill();
    };
    process.on('exit', stop);
    const remember = (line) => {
      output.push(line);
      if (output.length > 200) output.shift();
    };
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`${name} did not print its addresses within 60 s:\n${output.join('\n')}`));
    }, 60_000);
    // Keep draining both pipes for the whole run, or the example would block on a full pipe.
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      remember(line);
      let m = /^fake wechat on (\S+)/.exec(line);
      if (m) fakeUrl = m[1];
      m = /^listening on (http:\/\/\S+)/.exec(line);
      if (m) appUrl = m[1];
      if (fakeUrl && appUrl) {
        clearTimeout(timer);
        resolve({ appUrl, fakeUrl, output, stop });
      }
    });
    readline.createInterface({ input: child.stderr }).on('line', remember);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      if (!(fakeUrl && appUrl)) {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code ?? signal}) before listening:\n${output.join('\n')}`));
      }
    });
  });
}

let shimCount = 0;

/** Parses a body the way wx.request does with dataType 'json': JSON when it is, else the text. */
function parseBody(text) {
  if (text === '') return '';
  try {
    return JSON.parse(text);
  } catch (_) {
    return text;
  }
}

/**
 * A `wx` object for Node, shaped like the real one (callbacks, `success` for
 * any HTTP status, `fail` only without a response): `request`, `uploadFile`
 * and `downloadFile` are real HTTP (global fetch), `login` mints a real code
 * from the fake WeChat at `fakeUrl` (one openid per shim), storage is a Map,
 * `getFileSystemManager().readFileSync` reads real files. Counts every
 * wx.login call and records every request (method, path, headers, body).
 */
function makeWx({ fakeUrl, openid, codes } = {}) {
  assert.ok(fakeUrl, 'makeWx needs the fake WeChat URL');
  shimCount += 1;
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-shim-'));
  let files = 0;
  const shim = {
    openid: openid || `o-node-${process.pid}-${shimCount}-${Date.now()}`,
    storage: new Map(),
    loginCalls: 0,
    requests: [], // { api, method, path, headers, body }
    /** Codes to hand out instead of minting (e.g. a bogus one), first in first out. */
    scriptedCodes: codes ? [...codes] : [],
    /** Milliseconds wx.login waits before answering (a slow WeChat client). */
    loginDelayMs: 0,
    tmpDir,

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
      const answer = async () => {
        if (shim.loginDelayMs > 0) await sleep(shim.loginDelayMs);
        if (shim.scriptedCodes.length > 0) return shim.scriptedCodes.shift();
        const res = await fetch(`${fakeUrl}/_fake/wx.login`, {
          method: 'POST',
          body: JSON.stringify({ openid: shim.openid }),
        });
        const body = await res.json();
        if (res.status !== 200 || typeof body.code !== 'string') {
          throw new Error(`fake wx.login answered ${res.status} ${JSON.stringify(body)}`);
        }
        return body.code;
      };
      answer().then(
        (code) => success({ code, errMsg: 'login:ok' }),
        (err) => fail({ errMsg: `login:fail ${err.message}` }),
      );
    },

    record(api, method, target, headers, body) {
      shim.requests.push({ api, method: method.toUpperCase(), path: new URL(target).pathname, headers, body });
    },

    // Like wx.request: JSON bodies parsed into `data` (dataType 'json'),
    // objects sent as JSON (or as a query string on GET).
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
      shim.record('request', method, target, headers, body === undefined ? undefined : parseBody(body));
      fetch(target, { method, headers, body, signal: AbortSignal.timeout(timeout) })
        .then(async (res) => {
          const text = await res.text();
          success({
            statusCode: res.status,
            data: parseBody(text),
            header: Object.fromEntries(res.headers),
            errMsg: 'request:ok',
          });
        })
        .catch((err) => fail({ errMsg: `request:fail ${err.message}` }));
      return { abort() {} };
    },

    // Like wx.uploadFile: multipart/form-data with `formData` as text fields
    // and the file under `name`; `data` is the body as text. The request goes
    // out in one write (node:http with a Content-Length), as a small upload
    // does: a server that answers before reading the body (the layer's 401)
    // and closes would otherwise cut a streamed body with EPIPE.
    uploadFile({ url, filePath, name, header = {}, formData = {}, timeout = 15_000, success, fail }) {
      shim.record('uploadFile', 'POST', url, { ...header }, { filePath, name, formData });
      let body;
      const boundary = `----wxshim${crypto.randomBytes(12).toString('hex')}`;
      try {
        const parts = [];
        for (const [k, v] of Object.entries(formData)) {
          parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
        }
        parts.push(
          Buffer.from(
            `--${boundary}\r\ncontent-disposition: form-data; name="${name}"; filename="${path.basename(filePath)}"\r\n` +
              'content-type: application/octet-stream\r\n\r\n',
          ),
          fs.readFileSync(filePath),
          Buffer.from(`\r\n--${boundary}--\r\n`),
        );
        body = Buffer.concat(parts);
      } catch (err) {
        setImmediate(() => fail({ errMsg: `uploadFile:fail ${err.message}` }));
        return { abort() {} };
      }
      const req = http.request(url, {
        method: 'POST',
        headers: { ...header, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length },
        timeout,
      });
      let done = false;
      req.on('response', (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          done = true;
          success({ statusCode: res.statusCode, data: Buffer.concat(chunks).toString('utf8'), errMsg: 'uploadFile:ok' });
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => {
        if (!done) {
          done = true;
          fail({ errMsg: `uploadFile:fail ${err.message}` });
        }
      });
      req.end(body);
      return { abort() {} };
    },

    // Like wx.downloadFile: the body goes to a temp file (or `filePath`)
    // whatever the status; `success` reports where.
    downloadFile({ url, header = {}, filePath, timeout = 15_000, success, fail }) {
      shim.record('downloadFile', 'GET', url, { ...header }, undefined);
      fetch(url, { headers: header, signal: AbortSignal.timeout(timeout) })
        .then(async (res) => {
          const bytes = Buffer.from(await res.arrayBuffer());
          files += 1;
          const target = filePath || path.join(tmpDir, `download-${files}.tmp`);
          fs.writeFileSync(target, bytes);
          const result = { statusCode: res.status, errMsg: 'downloadFile:ok' };
          if (filePath) result.filePath = target;
          else result.tempFilePath = target;
          success(result);
        })
        .catch((err) => fail({ errMsg: `downloadFile:fail ${err.message}` }));
      return { abort() {} };
    },

    getFileSystemManager() {
      return {
        readFileSync(p, encoding) {
          return fs.readFileSync(p, encoding);
        },
      };
    },

    requestsTo(p) {
      return shim.requests.filter((r) => r.path === p).length;
    },
  };
  return shim;
}

/** GET `path` with a token, bypassing the client: the server's own answer. */
async function rawGet(appUrl, token, p = '/api/me') {
  const res = await fetch(`${appUrl}${p}`, { headers: { authorization: `Bearer ${token}` } });
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

/** Awaits `promise`, which must reject with a WxLoginError having the `expected` fields. */
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

module.exports = { DEMO_APP_ID, REPO, startExample, makeWx, rawGet, waitFor, rejectsWith, sleep };
