//! Fuzz target `token_header`: see `wxlogin::fuzzing::token_header` for the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxlogin::fuzzing::token_header(data));
