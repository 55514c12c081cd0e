//! Fuzz target `login_body`: see `wxlogin::fuzzing::login_body` for the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxlogin::fuzzing::login_body(data));
