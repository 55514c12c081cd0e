//! Fuzz target `token`: see `wxlogin::fuzzing::token` for the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxlogin::fuzzing::token(data));
