// Type test: the global `uni` of @dcloudio/types is accepted as `wx`.

import { createClient } from 'wxlogin-miniprogram';

export const api = createClient({ baseUrl: 'https://api.example.com', wx: uni });

export async function page(): Promise<string> {
  const res = await api.request<{ openid: string }>({ url: '/api/me', sslVerify: false });
  return res.data.openid;
}
