//! Fuzz target `wechat_reply`: see `wxlogin::fuzzing::wechat_reply` for the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxlogin::fuzzing::wechat_reply(data));
