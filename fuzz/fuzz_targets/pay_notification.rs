//! Fuzz target `pay_notification`: the WeChat Pay notification parser and
//! resource decryption; see `wxlogin::pay::fuzzing::notification` for the
//! invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxlogin::pay::fuzzing::notification(data));
