// Type test: `Taro` and `uni` shaped objects (their request APIs return
// promises and tasks) are accepted as `wx`. Real uni-app types: uni.ts.

import { createClient } from 'wxlogin-miniprogram';

interface TaroRequestTask<T> extends Promise<T> {
  abort(): void;
}

declare const Taro: {
  request<T = any>(option: { url: string; method?: string; data?: unknown; header?: Record<string, string>; success?: (res: { data: T; statusCode: number }) => void }): TaroRequestTask<{ data: T; statusCode: number; header: Record<string, string> }>;
  login(option?: { timeout?: number; success?: (res: { code: string }) => void; fail?: (err: { errMsg: string }) => void }): Promise<{ code: string; errMsg: string }>;
  uploadFile(option: { url: string; filePath: string; name: string }): TaroRequestTask<{ data: string; statusCode: number }>;
  downloadFile(option: { url: string }): TaroRequestTask<{ tempFilePath: string; statusCode: number }>;
  getStorageSync<T = any>(key: string): T;
  setStorageSync(key: string, data: any): void;
  removeStorageSync(key: string): void;
};

export const api = createClient({ baseUrl: 'https://api.example.com', wx: Taro });
