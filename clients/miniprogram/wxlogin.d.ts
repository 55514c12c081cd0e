// Types for wxlogin-miniprogram (wxlogin.js). They stand alone: with
// miniprogram-api-typings, `wx` is accepted as the `wx` option; `Taro` and
// `uni` are accepted by shape.

/** The request methods of `wx.request` (and Taro's and uni-app's). */
export type RequestMethod =
  | 'OPTIONS'
  | 'GET'
  | 'HEAD'
  | 'POST'
  | 'PUT'
  | 'DELETE'
  | 'TRACE'
  | 'CONNECT'
  | 'PATCH';

/** Header names to values. */
export type Headers = Record<string, string>;

/** Options of `request`: those of `wx.request` (without the callbacks), plus `auth`. */
export interface RequestOptions {
  /** Relative to `baseUrl`, or absolute (`https://...`). */
  url: string;
  method?: RequestMethod;
  data?: string | Record<string, any> | ArrayBuffer;
  /** Merged over `defaultHeader`; the token header is added on top. */
  header?: Headers;
  /** Milliseconds, as `wx.request` takes it. */
  timeout?: number;
  dataType?: string;
  responseType?: 'text' | 'arraybuffer';
  /** `false`: send no token, never log in, never replay (a public route). Default `true`. */
  auth?: boolean;
  /** Any other option of the platform's request API is passed through. */
  [option: string]: unknown;
}

/** What `request` resolves with: the API's response, `data` typed as asked. */
export interface RequestResult<T = any> {
  statusCode: number;
  data: T;
  header: Record<string, any>;
  cookies?: string[];
  errMsg?: string;
  [field: string]: unknown;
}

/** Options of `uploadFile`: those of `wx.uploadFile` (without the callbacks), plus `auth`. */
export interface UploadFileOptions {
  url: string;
  /** The local file (`wxfile://...`, a temp path). */
  filePath: string;
  /** The form field the file goes in. */
  name: string;
  header?: Headers;
  formData?: Record<string, any>;
  timeout?: number;
  auth?: boolean;
  [option: string]: unknown;
}

/** What `uploadFile` resolves with; `data` is the body as text (JSON.parse it). */
export interface UploadFileResult {
  statusCode: number;
  data: string;
  errMsg?: string;
  [field: string]: unknown;
}

/** Options of `downloadFile`: those of `wx.downloadFile` (without the callbacks), plus `auth`. */
export interface DownloadFileOptions {
  url: string;
  header?: Headers;
  /** Where to save it; by default a temp file (`tempFilePath`). */
  filePath?: string;
  timeout?: number;
  auth?: boolean;
  [option: string]: unknown;
}

/** What `downloadFile` resolves with. */
export interface DownloadFileResult {
  statusCode: number;
  tempFilePath: string;
  filePath?: string;
  errMsg?: string;
  [field: string]: unknown;
}

/** A response as `readError` and `isRelogin` see it: a text body already read as JSON where it is. */
export interface ResponseView {
  statusCode: number;
  data: any;
  header?: Record<string, any>;
  [field: string]: unknown;
}

/** What `readError` returns for a response that carries an error. */
export interface ErrorInfo {
  /** wxlogin's `error` code where the envelope has it (`invalid_code` gets one fresh code on login). */
  code: string;
  message?: string;
  relogin?: boolean;
}

/**
 * The API object: `wx`, `Taro` or `uni` (or a shim). Any object with these
 * methods will do; `uploadFile`, `downloadFile` and `getFileSystemManager`
 * are needed only by the client's methods of the same names.
 */
export interface MiniProgramApi {
  request(options: any): any;
  login(options: any): any;
  getStorageSync(key: string): any;
  setStorageSync(key: string, data: any): any;
  removeStorageSync(key: string): any;
  uploadFile?(options: any): any;
  downloadFile?(options: any): any;
  getFileSystemManager?(): any;
}

/** Options of `createClient`. */
export interface ClientOptions {
  /** The server, e.g. `https://api.example.com`. */
  baseUrl: string;
  /** `wx` (the default, from `globalThis`), `Taro` or `uni`. */
  wx?: MiniProgramApi;
  /** Default `/wx/login`. */
  loginPath?: string;
  /** Default `/wx/logout`. */
  logoutPath?: string;
  /** Storage key of the token; default `wxlogin_token`. */
  tokenKey?: string;
  /** Default `Authorization` (sends `Bearer <token>`); another name sends the bare token. */
  tokenHeader?: string;
  /** @deprecated the old name of `tokenHeader`. */
  header?: string;
  /** Sent as `appid` with the login code, for a server serving several mini programs. */
  appId?: string;
  /** Headers for every request, login and logout included (or a function called for each). */
  defaultHeader?: Headers | (() => Headers);
  /** Milliseconds for one login (wx.login and the login route); default 15000; `Infinity` for none. */
  loginTimeout?: number;
  /** The token from the login answer's body; default `data.token`. */
  readToken?: (data: any, res: ResponseView) => string | null | undefined;
  /** The error a response carries (`null` when none); a non-2xx it returns nothing for reads as wxlogin's format. */
  readError?: (res: ResponseView) => ErrorInfo | null | undefined;
  /** Whether an error means "log in again and replay once"; default: status 401 with `relogin`. */
  isRelogin?: (error: WxLoginError, res: ResponseView) => boolean;
}

/** The arguments of `wx.requestPayment`, as the server signs them (DESIGN.md "Payment"). */
export interface PaymentArgs {
  /** Unix seconds, as a string. */
  timeStamp: string;
  nonceStr: string;
  /** `prepay_id=…`. */
  package: string;
  /** `RSA` for WeChat Pay APIv3. */
  signType: string;
  paySign: string;
}

/** Options of `requestPayment`. */
export interface RequestPaymentOptions {
  /** The server's order route; default `/api/pay/orders`. */
  url?: string;
  /** What the server needs to make the order, such as `{product_id, quantity}`: never the price or the payer. */
  data?: Record<string, any>;
  header?: Headers;
  timeout?: number;
}

/** What `requestPayment` resolves with. */
export interface RequestPaymentResult<O = any> {
  /** The server's answer: at least `out_trade_no` and `payment`. */
  order: O & { out_trade_no?: string; payment: PaymentArgs };
  /** What `wx.requestPayment` reported (`errMsg: 'requestPayment:ok'`); not proof of payment. */
  result: any;
}

/** A client: one per app (it holds the login in flight). */
export interface Client {
  /** A request with the session token; resolves for an answer without error, rejects with a `WxLoginError`. */
  request<T = any>(options: RequestOptions): Promise<RequestResult<T>>;
  /** `wx.uploadFile` with the token. */
  uploadFile(options: UploadFileOptions): Promise<UploadFileResult>;
  /** `wx.downloadFile` with the token. */
  downloadFile(options: DownloadFileOptions): Promise<DownloadFileResult>;
  /** Logs in now (sharing a login in flight); resolves with the token. */
  login(): Promise<string>;
  /** Forgets the token and ends the session; `true` when the server confirmed. Never rejects. */
  logout(): Promise<boolean>;
  /**
   * Creates the order on the server (with the token), then calls
   * `wx.requestPayment` with the answer's `payment` as received. Rejects with
   * `payment_cancelled`, `payment_failed`, `bad_payment_response`, or the
   * server's error (`payment_unavailable`, `payment_failed`, `bad_request`, ...).
   */
  requestPayment<O = any>(options?: RequestPaymentOptions): Promise<RequestPaymentResult<O>>;
}

/** Options of the `WxLoginError` constructor. */
export interface WxLoginErrorOptions {
  status?: number;
  relogin?: boolean;
  data?: unknown;
  cause?: unknown;
}

/** Every rejection of the client: the server's error code, or the client's own. */
export declare class WxLoginError extends Error {
  constructor(code: string, message?: string, options?: WxLoginErrorOptions);
  name: 'WxLoginError';
  /** The server's `error` (or the envelope's, through `readError`), or `network_error`, `wx_login_failed`, `login_timeout`, `bad_login_response`, `logged_out`, `payment_cancelled`, `payment_failed`, `bad_payment_response`, `http_<status>`. */
  code: string;
  /** The HTTP status; 0 when there was no response. */
  status: number;
  /** The server's `relogin` flag. */
  relogin: boolean;
  /** The error body as received (read as JSON where it is). */
  data: unknown;
  cause?: unknown;
}

/** Creates a client. Throws a `TypeError` for a missing `baseUrl` or `wx`. */
export declare function createClient(options: ClientOptions): Client;
