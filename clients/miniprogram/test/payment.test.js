// requestPayment against the running demo and its fake WeChat Pay: the
// order is created on the server (the price and payer are the server's),
// wx.requestPayment gets the server's answer as is, and the shim's
// requestPayment plays the WeChat client paying (the fake then posts the
// signed, encrypted notification to the demo's notify route).

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { createClient } = require('wxlogin-miniprogram');
const harness = require('./harness');
const { rejectsWith, waitFor } = harness;

let demo = null;
let control = '';

before(async () => {
  demo = await harness.startExample('demo');
  const line = demo.output.find((l) => /^fake wechat pay on /.test(l));
  assert.ok(line, `the demo did not say it started the fake WeChat Pay:\n${demo.output.join('\n')}`);
  control = /\(control (\S+)\)/.exec(line)[1];
});

after(() => {
  if (demo) demo.stop();
});

/** A shim whose requestPayment is the WeChat client: it pays through the fake (or cancels). */
function payingWx({ cancel = false } = {}) {
  const wx = harness.makeWx({ fakeUrl: demo.fakeUrl });
  wx.payments = [];
  wx.requestPayment = (args) => {
    wx.payments.push({ ...args, success: undefined, fail: undefined });
    if (cancel) {
      setImmediate(() => args.fail({ errMsg: 'requestPayment:fail cancel' }));
      return;
    }
    fetch(`${control}/_fake/pay`, { method: 'POST', body: JSON.stringify({ package: args.package }) })
      .then((res) => res.json())
      .then((body) => {
        if (body.notify_status >= 200 && body.notify_status < 300) args.success({ errMsg: 'requestPayment:ok' });
        else args.fail({ errMsg: `requestPayment:fail notify ${body.notify_status}` });
      })
      .catch((err) => args.fail({ errMsg: `requestPayment:fail ${err.message}` }));
  };
  return wx;
}

test('requestPayment creates the order on the server, pays it, and the server sees it paid', async () => {
  const wx = payingWx();
  const api = createClient({ baseUrl: demo.appUrl, wx });
  const { order, result } = await api.requestPayment({
    data: { product_id: 'p2', quantity: 3, amount: 1, openid: 'o-mallory' },
  });
  assert.equal(result.errMsg, 'requestPayment:ok');
  assert.match(order.out_trade_no, /^[0-9A-Za-z_\-|*]{6,32}$/);
  // wx.requestPayment got the server's arguments as they came.
  assert.equal(wx.payments.length, 1);
  const args = wx.payments[0];
  assert.deepEqual(
    { timeStamp: args.timeStamp, nonceStr: args.nonceStr, package: args.package, signType: args.signType, paySign: args.paySign },
    order.payment,
  );
  assert.equal(typeof args.timeStamp, 'string');
  assert.match(args.timeStamp, /^\d{10}$/);
  assert.match(args.package, /^prepay_id=wx/);
  assert.equal(args.signType, 'RSA');
  // The server priced it (3 × 2500) and the notify route marked it paid.
  const state = await waitFor(async () => {
    const res = await api.request({ url: `/api/pay/orders/${order.out_trade_no}` });
    return res.data.state === 'SUCCESS' ? res.data : null;
  });
  assert.equal(state.total, 7500);
  // The order body named no payer the server used: only the session's user sees the order.
  const other = createClient({ baseUrl: demo.appUrl, wx: payingWx() });
  await rejectsWith(other.request({ url: `/api/pay/orders/${order.out_trade_no}` }), { status: 404 });
});

test('a cancelled payment rejects with payment_cancelled and leaves the order unpaid', async () => {
  const wx = payingWx({ cancel: true });
  const api = createClient({ baseUrl: demo.appUrl, wx });
  const err = await rejectsWith(api.requestPayment({ data: { product_id: 'p1', quantity: 1 } }), {
    code: 'payment_cancelled',
  });
  const no = err.data.out_trade_no;
  const res = await api.request({ url: `/api/pay/orders/${no}` });
  assert.deepEqual(res.data, { out_trade_no: no, state: 'NOTPAY', total: 100 });
});

test('an unknown product is the server\'s bad_request, and wx.requestPayment is never called', async () => {
  const wx = payingWx();
  const api = createClient({ baseUrl: demo.appUrl, wx });
  await rejectsWith(api.requestPayment({ data: { product_id: 'p9', quantity: 1 } }), {
    code: 'bad_request',
    status: 400,
  });
  await rejectsWith(api.requestPayment({ data: { product_id: 'p1', quantity: 100 } }), { code: 'bad_request' });
  assert.equal(wx.payments.length, 0);
});

test('a forged notification to the demo is refused with {"code":"FAIL"}', async () => {
  const res = await fetch(`${demo.appUrl}/wx/pay/notify`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'wechatpay-timestamp': String(Math.floor(Date.now() / 1000)),
      'wechatpay-nonce': 'n',
      'wechatpay-serial': 'PUB_KEY_ID_0114232134912410000000000000000001',
      'wechatpay-signature': 'WECHATPAY/SIGNTEST/x',
    },
    body: '{}',
  });
  assert.equal(res.status, 401);
  assert.equal((await res.json()).code, 'FAIL');
});
