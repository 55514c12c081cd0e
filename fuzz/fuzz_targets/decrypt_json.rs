//! Fuzz target `decrypt_json`: see `wxlogin::fuzzing::decrypt_json` for the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxlogin::fuzzing::decrypt_json(data));
