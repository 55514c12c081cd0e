//! The OS random source (CSPRNG): bytes, and alphanumeric strings without
//! bias, for session ids, token keys, cache seeds, nonces and order numbers.

/// `N` bytes from the OS random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
    bytes
}

/// `len` random characters of `[0-9A-Za-z]`, each equally likely.
#[cfg(any(feature = "mock", feature = "pay"))]
pub(crate) fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<48>() {
            // 248 = 4 * 62: keeping only bytes below it makes every letter equally likely.
            if b < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    out
}

#[cfg(all(test, any(feature = "mock", feature = "pay")))]
mod tests {
    use super::random_alnum;

    #[test]
    fn alnum_strings_have_their_length_and_alphabet_and_differ() {
        for len in [0, 1, 12, 32, 100] {
            let s = random_alnum(len);
            assert_eq!(s.len(), len);
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()), "{s}");
        }
        assert_ne!(random_alnum(32), random_alnum(32));
    }
}
