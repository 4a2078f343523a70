//! An object's hash computed part by part across many calls: the MD5 state
//! after the parts hashed so far is written into the upload's record, so
//! that neither the bytes nor the state have to stay in server memory
//! between calls (or survive a restart anywhere but on disk).

use crate::datajoint::hash::Hash;
use md5::digest::common::hazmat::{SerializableState, SerializedState};
use md5::{Digest, Md5};

/// A DataJoint object hash in progress (seeded like [`crate::datajoint::hash::Hasher`]).
#[derive(Clone)]
pub struct Running(Md5);

impl Running {
    /// A fresh hash: seeded with `utf8(name) ‖ 0x00` for an attachment, empty for a blob.
    pub fn new(attachment_name: Option<&str>) -> Self {
        let mut h = Md5::new();
        if let Some(name) = attachment_name {
            h.update(name.as_bytes());
            h.update([0u8]);
        }
        Running(h)
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Hash {
        self.0.finalize().into()
    }

    /// The state as hex, for the record.
    pub fn to_hex(&self) -> String {
        self.0.serialize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The state written by [`Self::to_hex`]; `None` if it is not one
    /// (another library version, or a damaged record).
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes: Vec<u8> =
            (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok())).collect::<Option<_>>()?;
        let state = SerializedState::<Md5>::try_from(bytes.as_slice()).ok()?;
        Md5::deserialize(&state).ok().map(Running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datajoint::hash;

    #[test]
    fn a_state_carried_through_hex_hashes_like_one_pass() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 253) as u8).collect();
        for (name, want) in [(Some("x.bin"), hash::attachment("x.bin", &data)), (None, hash::digest(b"", &data))] {
            let mut r = Running::new(name);
            for part in data.chunks(777) {
                // every part in a new call, as if after a restart
                r = Running::from_hex(&r.to_hex()).unwrap();
                r.update(part);
            }
            assert_eq!(r.finish(), want);
        }
        assert!(Running::from_hex("00").is_none());
        assert!(Running::from_hex("zz").is_none());
        assert!(Running::from_hex(&"0".repeat(3)).is_none());
    }
}
