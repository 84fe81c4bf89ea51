//! Lower-case hex of bytes: digests in the event log (input digests, token hashes,
//! fingerprints) and derived trace ids.

/// Lower-case hex of `bytes`, two digits a byte (what `format!("{b:02x}")` writes, without
/// a formatter call per byte: input digests are taken on every step).
#[inline]
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}
