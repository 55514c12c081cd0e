// Type test: the package under `tsc --strict` with miniprogram-api-typings
// (the global `wx`). Compiled by check.js against the packed tarball; every
// `@ts-expect-error` must be an error, or tsc fails.

import { createClient, WxLoginError } from 'wxlogin-miniprogram';
import type { Client, ClientOptions, ErrorInfo, RequestResult, ResponseView } from 'wxlogin-miniprogram';

interface Me {
  openid: string;
  unionid: string | null;
}

interface Envelope<T> {
  code: number;
  msg: string;
  data: T;
}

const options: ClientOptions = {
  baseUrl: 'https://api.example.com',
  wx,
  tokenHeader: 'X-WX-Session',
  appId: wx.getAccountInfoSync().miniProgram.appId,
  defaultHeader: () => ({ 'X-App-Version': '1.0.0' }),
  loginTimeout: 10_000,
  readToken: (data) => (data.code === 0 ? data.data.token : undefined),
  readError: (res: ResponseView): ErrorInfo | null =>
    res.data && res.data.code !== 0 ? { code: res.data.data.error, message: res.data.msg, relogin: res.data.data.relogin } : null,
  isRelogin: (err, res) => err.relogin && res.statusCode === 200,
};
const api: Client = createClient(options);

// Taken as the default `wx` too.
createClient({ baseUrl: 'https://api.example.com' });

export async function page(): Promise<void> {
  const me = await api.request<Me>({ url: '/api/me' });
  const asResult: RequestResult<Me> = me;
  const openid: string = me.data.openid;
  const status: number = me.statusCode;
  // @ts-expect-error: data is typed as asked
  const wrong: number = me.data.openid;

  // @ts-expect-error: without a type argument data is any, with one it is checked
  const untyped: Envelope<Me> = (await api.request<string>({ url: '/api/me' })).data;
  const wrapped = await api.request<Envelope<Me>>({ url: '/api/me', method: 'GET', header: { 'X-Trace': '1' } });
  const inner: string | null = wrapped.data.data.unionid;

  // A public request; platform options pass through.
  await api.request({ url: '/api/news', auth: false, enableHttp2: true, timeout: 5000 });
  // @ts-expect-error: not a method
  await api.request({ url: '/x', method: 'FETCH' });
  // @ts-expect-error: url is required
  await api.request({ method: 'GET' });

  const chosen = await new Promise<string>((resolve) =>
    wx.chooseMedia({ count: 1, success: (res) => resolve(res.tempFiles[0].tempFilePath) }),
  );
  const up = await api.uploadFile({ url: '/api/upload', filePath: chosen, name: 'file', formData: { purpose: 'avatar' } });
  const text: string = up.data;
  // @ts-expect-error: name is required
  await api.uploadFile({ url: '/api/upload', filePath: chosen });

  const down = await api.downloadFile({ url: '/api/report.pdf' });
  wx.openDocument({ filePath: down.tempFilePath });

  const token: string = await api.login();
  const confirmed: boolean = await api.logout();

  const paid = await api.requestPayment<{ out_trade_no: string }>({ data: { product_id: 'p1', quantity: 2 } });
  const tradeNo: string = paid.order.out_trade_no;
  const pkg: string = paid.order.payment.package;
  const timeStamp: string = paid.order.payment.timeStamp;
  // @ts-expect-error: data is an object of order fields
  await api.requestPayment({ data: 42 });

  try {
    await api.request({ url: '/api/orders', method: 'POST', data: { sku: 42 } });
  } catch (e) {
    if (e instanceof WxLoginError) {
      const code: string = e.code;
      const httpStatus: number = e.status;
      const relogin: boolean = e.relogin;
      const body: unknown = e.data;
      wx.showToast({ title: `${code} ${httpStatus} ${relogin} ${String(body)} ${e.message}`, icon: 'none' });
    }
  }
  void [untyped, asResult, openid, status, wrong, inner, text, token, confirmed, tradeNo, pkg, timeStamp];
}

// @ts-expect-error: baseUrl is required
createClient({ wx });
// @ts-expect-error: loginTimeout is a number of ms
createClient({ baseUrl: 'https://api.example.com', loginTimeout: '10s' });
// @ts-expect-error: a `wx` needs request, login and the storage calls
createClient({ baseUrl: 'https://api.example.com', wx: { request() {} } });

const err = new WxLoginError('network_error', 'offline', { status: 0 });
const name: 'WxLoginError' = err.name;
void name;
