//! A compact binary encoding of [`SessionRecord`], for stores that keep bytes.
//!
//! ```text
//! 0      version (3 with a device, 2 without; version 1 is still read)
//! 1..9   idle deadline, ms, big-endian u64 (0 = none)   <- fixed offset, so a
//! 9..17  expiry, ms                                         store can move the
//! 17..25 creation, ms                                       idle deadline in place
//! then   openid, unionid (0xFFFF length = none), app_id, session_key as
//!        u16-length-prefixed UTF-8; (version 3) the device: a flags byte
//!        (1: a User-Agent follows, 2: an IPv4, 4: an IPv6; never 0: a
//!        record with no device is written as version 2, byte for byte as
//!        before), the User-Agent prefixed by its length as a
//!        LEB128 varint, the address's 4 or 16 bytes; and data prefixed by
//!        its length as a LEB128 varint (version 1: a big-endian u32).
//!        Data last: a store can replace it without decoding what comes
//!        before.
//! ```
//!
//! About 100 bytes plus the app's data and the User-Agent (a WeChat one is
//! about 150 bytes), against ~300 for the same record as JSON.

use super::{SessionRecord, StoreError};
use crate::Secret;

const VERSION: u8 = 3;
/// The first format, still read: the data had a 4-byte length prefix.
const VERSION_1: u8 = 1;
/// The second format, still read: no User-Agent or IP.
const VERSION_2: u8 = 2;
/// Byte offset of the idle deadline in an encoded record.
pub const IDLE_OFFSET: usize = 1;
/// Byte offset of the expiry in an encoded record.
pub const EXPIRES_OFFSET: usize = 9;
const NONE: u16 = u16::MAX;

impl SessionRecord {
    /// Encodes the record in the compact binary format.
    ///
    /// ```
    /// use wxlogin::{Secret, SessionRecord};
    /// let rec = SessionRecord {
    ///     openid: "o1".into(), unionid: None, app_id: "wx1".into(),
    ///     session_key: Secret::new("k"), data: b"{}".to_vec(),
    ///     created_at_ms: 1, expires_at_ms: 2, idle_expires_at_ms: None, user_agent: None, ip: None,
    /// };
    /// assert_eq!(SessionRecord::decode(&rec.encode()).unwrap(), rec);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let strings = self.openid.len()
            + self.unionid.as_ref().map_or(0, |u| u.len())
            + self.app_id.len()
            + self.session_key.expose().len();
        let ua = self.user_agent.as_deref().map(|u| cut(u, DEVICE_UA_MAX));
        // The address's flag and bytes, read once.
        let mut ip_buf = [0u8; 16];
        let (ip_flag, ip_len) = match self.ip {
            None => (0, 0),
            Some(std::net::IpAddr::V4(v4)) => {
                ip_buf[..4].copy_from_slice(&v4.octets());
                (HAS_V4, 4)
            }
            Some(std::net::IpAddr::V6(v6)) => {
                ip_buf = v6.octets();
                (HAS_V6, 16)
            }
        };
        let ip_bytes = &ip_buf[..ip_len];
        let flags = ua.map_or(0, |_| HAS_UA) | ip_flag;
        // Exact (a varint of a User-Agent is at most 2 bytes): the memory
        // store boxes the bytes, and a shrink leaves slack it would keep.
        let device_len = match flags {
            0 => 0,
            _ => {
                1 + ua.map_or(0, |u| u.len() + if u.len() < 0x80 { 1 } else { 2 }) + ip_bytes.len()
            }
        };
        let mut out = Vec::with_capacity(25 + 8 + 5 + strings + device_len + self.data.len());
        // With no device, the version 2 layout: not one byte more than before.
        out.push(if flags == 0 { VERSION_2 } else { VERSION });
        out.extend_from_slice(&self.idle_expires_at_ms.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.to_be_bytes());
        out.extend_from_slice(&self.created_at_ms.to_be_bytes());
        put_str(&mut out, Some(&self.openid));
        put_str(&mut out, self.unionid.as_deref());
        put_str(&mut out, Some(&self.app_id));
        put_str(&mut out, Some(self.session_key.expose()));
        // The device: a flags byte, then what it says.
        if flags != 0 {
            out.push(flags);
        }
        if let Some(ua) = ua {
            put_varint(&mut out, ua.len());
            out.extend_from_slice(ua.as_bytes());
        }
        out.extend_from_slice(ip_bytes);
        // The data's length as a LEB128 varint: one byte up to 127.
        put_varint(&mut out, self.data.len());
        out.extend_from_slice(&self.data);
        out
    }

    /// Decodes a record made by [`SessionRecord::encode`]; any damage, or an
    /// unknown version, is a [`StoreError::bad_record`].
    ///
    /// ```
    /// use wxlogin::{Secret, SessionRecord};
    /// let rec = SessionRecord {
    ///     openid: "o1".into(), unionid: Some("u1".into()), app_id: "wx1".into(),
    ///     session_key: Secret::new("k"), data: b"{}".to_vec(),
    ///     created_at_ms: 1, expires_at_ms: 2, idle_expires_at_ms: Some(2), user_agent: None, ip: None,
    /// };
    /// let bytes = rec.encode();
    /// assert_eq!(SessionRecord::decode(&bytes).unwrap(), rec);
    /// assert!(SessionRecord::decode(&bytes[..bytes.len() - 1]).unwrap_err().is_bad_record());
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.take(1)?[0];
        if ![VERSION, VERSION_1, VERSION_2].contains(&version) {
            return Err(StoreError::bad_record("unknown session record version"));
        }
        let idle = r.u64()?;
        let expires_at_ms = r.u64()?;
        let created_at_ms = r.u64()?;
        let openid = r.string()?.ok_or_else(damaged)?;
        let unionid = r.string()?;
        let app_id = r.string()?.ok_or_else(damaged)?;
        let session_key = Secret::new(r.string()?.ok_or_else(damaged)?);
        let (user_agent, ip) = if version == VERSION {
            let flags = r.take(1)?[0];
            if flags == 0
                || flags & !(HAS_UA | HAS_V4 | HAS_V6) != 0
                || flags & HAS_V4 != 0 && flags & HAS_V6 != 0
            {
                return Err(damaged());
            }
            let user_agent = if flags & HAS_UA != 0 {
                let len = r.varint()?;
                let raw = r.take(len)?;
                Some(String::from_utf8(raw.to_vec()).map_err(|_| damaged())?)
            } else {
                None
            };
            let ip = if flags & HAS_V4 != 0 {
                let octets: [u8; 4] = r.take(4)?.try_into().map_err(|_| damaged())?;
                Some(std::net::IpAddr::from(octets))
            } else if flags & HAS_V6 != 0 {
                let octets: [u8; 16] = r.take(16)?.try_into().map_err(|_| damaged())?;
                Some(std::net::IpAddr::from(octets))
            } else {
                None
            };
            (user_agent, ip)
        } else {
            (None, None)
        };
        let len = if version == VERSION_1 {
            u32::from_be_bytes(r.take(4)?.try_into().map_err(|_| damaged())?) as usize
        } else {
            r.varint()?
        };
        let data = r.take(len)?.to_vec();
        if r.pos != bytes.len() {
            return Err(damaged());
        }
        Ok(SessionRecord {
            openid,
            unionid,
            app_id,
            session_key,
            data,
            created_at_ms,
            expires_at_ms,
            idle_expires_at_ms: (idle != 0).then_some(idle),
            user_agent,
            ip,
        })
    }
}

fn damaged() -> StoreError {
    StoreError::bad_record("damaged session record")
}

/// The openid of an encoded record, read in place (it follows the 25-byte
/// header), for stores that index by user without decoding the rest.
pub(crate) fn openid_of(bytes: &[u8]) -> Option<&str> {
    let len = u16::from_be_bytes(bytes.get(25..27)?.try_into().ok()?);
    if len == NONE {
        return None;
    }
    std::str::from_utf8(bytes.get(27..27 + len as usize)?).ok()
}

/// Device flags (version 3): a `User-Agent` follows, an IPv4 or an IPv6 address.
const HAS_UA: u8 = 1;
const HAS_V4: u8 = 2;
const HAS_V6: u8 = 4;

/// Longest `User-Agent` a record keeps, in bytes (the login keeps 256).
const DEVICE_UA_MAX: usize = 1024;

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A length as a LEB128 varint: one byte up to 127.
fn put_varint(out: &mut Vec<u8>, mut len: usize) {
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
}

fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            // Ids and keys are short; anything longer is cut at a char boundary.
            let s = cut(s, NONE as usize - 1);
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        None => out.extend_from_slice(&NONE.to_be_bytes()),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A LEB128 length: at most five bytes (32 bits), so no input overflows.
    fn varint(&mut self) -> Result<usize, StoreError> {
        let mut value = 0usize;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= ((byte & 0x7f) as usize) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(damaged())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.pos.checked_add(n).ok_or_else(damaged)?;
        let slice = self.bytes.get(self.pos..end).ok_or_else(damaged)?;
        self.pos = end;
        Ok(slice)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| damaged())?,
        ))
    }

    fn string(&mut self) -> Result<Option<String>, StoreError> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().map_err(|_| damaged())?);
        if len == NONE {
            return Ok(None);
        }
        let raw = self.take(len as usize)?;
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| damaged())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord {
            openid: "oVBkZ0aYgDMDIywRdgPW8-joxXc4".into(),
            unionid: Some("ocMvos6NjeKLIBqg5Mr9QjxrP1FA".into()),
            app_id: "wx4f4bc4dec97d474b".into(),
            session_key: Secret::new("tiihtNczf5v6AKRyjwEUhQ=="),
            data: br#"{"user_id":42}"#.to_vec(),
            created_at_ms: 1_700_000_000_000,
            expires_at_ms: 1_700_604_800_000,
            idle_expires_at_ms: Some(1_700_000_600_000),
            user_agent: None,
            ip: None,
        }
    }

    #[test]
    fn round_trip() {
        let r = record();
        let bytes = r.encode();
        assert_eq!(SessionRecord::decode(&bytes).unwrap(), r);
        let mut none = r.clone();
        none.unionid = None;
        none.idle_expires_at_ms = None;
        assert_eq!(SessionRecord::decode(&none.encode()).unwrap(), none);
        for ip in ["203.0.113.7", "2001:db8::1"] {
            let mut device = r.clone();
            device.user_agent = Some("Mozilla/5.0 (iPhone) MicroMessenger/8.0.50".into());
            device.ip = Some(ip.parse().unwrap());
            let bytes = device.encode();
            assert_eq!(bytes[0], 3);
            assert_eq!(SessionRecord::decode(&bytes).unwrap(), device);
            assert_eq!(openid_of(&bytes), Some(r.openid.as_str()));
        }
    }

    #[test]
    fn data_lengths_across_varint_widths_and_version_1() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut r = record();
            r.data = vec![b'x'; len];
            let bytes = r.encode();
            assert_eq!(SessionRecord::decode(&bytes).unwrap(), r, "{len}");
            assert!(SessionRecord::decode(&bytes[..bytes.len() - 1]).is_err());
        }
        // With no device a record is version 2, as the previous release
        // wrote it; version 1 had a u32 data length.
        let r = record();
        let v2 = r.encode();
        assert_eq!(v2[0], 2);
        let head = v2.len() - r.data.len() - 1;
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&v2[1..head]);
        v1.extend_from_slice(&(r.data.len() as u32).to_be_bytes());
        v1.extend_from_slice(&r.data);
        assert_eq!(SessionRecord::decode(&v1).unwrap(), r);
        // Version 3: a flags byte where version 2 has the data's length.
        // No flags, unknown flags, or both address kinds, are damage.
        for flags in [0u8, 8, 6, 0x80] {
            let mut bad = vec![3u8];
            bad.extend_from_slice(&v2[1..head]);
            bad.push(flags);
            bad.extend_from_slice(&v2[head..]);
            assert!(SessionRecord::decode(&bad).unwrap_err().is_bad_record());
        }
        // An endless varint is damage, not a panic or a huge allocation.
        let mut bad = v2[..head].to_vec();
        bad.extend_from_slice(&[0xff; 8]);
        assert!(SessionRecord::decode(&bad).is_err());
    }

    #[test]
    fn fields_read_in_place() {
        let r = record();
        let bytes = r.encode();
        assert_eq!(openid_of(&bytes), Some(r.openid.as_str()));
        let expires = u64::from_be_bytes(
            bytes[EXPIRES_OFFSET..EXPIRES_OFFSET + 8]
                .try_into()
                .unwrap(),
        );
        assert_eq!(expires, r.expires_at_ms);
        assert_eq!(openid_of(&bytes[..30]), None, "cut short");
        assert_eq!(openid_of(b""), None);
    }

    #[test]
    fn idle_deadline_at_fixed_offset() {
        let bytes = record().encode();
        let idle = u64::from_be_bytes(bytes[IDLE_OFFSET..IDLE_OFFSET + 8].try_into().unwrap());
        assert_eq!(idle, 1_700_000_600_000);
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let bytes = record().encode();
        for n in 0..bytes.len() {
            assert!(SessionRecord::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SessionRecord::decode(&longer).is_err());
        let mut version = bytes;
        version[0] = 9;
        assert!(SessionRecord::decode(&version).unwrap_err().is_bad_record());
    }
}
