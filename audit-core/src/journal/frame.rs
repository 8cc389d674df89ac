//! The journal's on-disk frames.
//!
//! A segment file starts with the 8-byte [`SEGMENT_MAGIC`], then frames:
//! `u32be(len) || u32be(crc32c(u32be(len) || payload)) || payload`, where the
//! payload is the canonical event bytes `E`. The checksum covers the length
//! too, so a damaged length is caught like damaged bytes.

/// First bytes of every segment file: name and format version.
pub const SEGMENT_MAGIC: &[u8; 8] = b"DAJRNL\x00\x01";
/// Bytes of a frame header.
pub const FRAME_HEADER: usize = 8;

/// Appends one frame holding `payload` to `buffer`.
pub fn encode(buffer: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    buffer.extend_from_slice(&len);
    buffer.extend_from_slice(&crc.to_be_bytes());
    buffer.extend_from_slice(payload);
}

/// What lies at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, intact frame, and the offset after it.
    Frame {
        /// The payload.
        payload: &'a [u8],
        /// Offset of the next frame.
        next: usize,
    },
    /// The bytes end inside the frame (header or payload incomplete).
    Incomplete,
    /// The frame is whole but its checksum does not match; `end` is where
    /// it would end.
    BadChecksum {
        /// Offset after the frame.
        end: usize,
    },
}

/// Decodes the frame at `offset` of `bytes`.
pub fn decode(bytes: &[u8], offset: usize) -> Decoded<'_> {
    let Some(header) = bytes.get(offset..offset + FRAME_HEADER) else {
        return Decoded::Incomplete;
    };
    let len_bytes: [u8; 4] = [header[0], header[1], header[2], header[3]];
    let stored_crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let start = offset + FRAME_HEADER;
    let end = start.saturating_add(u32::from_be_bytes(len_bytes) as usize);
    let Some(payload) = bytes.get(start..end) else {
        return Decoded::Incomplete;
    };
    if crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload) != stored_crc {
        return Decoded::BadChecksum { end };
    }
    Decoded::Frame { payload, next: end }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_detected() {
        let mut buffer = Vec::new();
        encode(&mut buffer, b"first");
        encode(&mut buffer, b"second");
        let Decoded::Frame { payload, next } = decode(&buffer, 0) else {
            panic!()
        };
        assert_eq!(payload, b"first");
        assert_eq!(
            decode(&buffer, next),
            Decoded::Frame {
                payload: b"second",
                next: buffer.len()
            }
        );
        assert_eq!(
            decode(&buffer[..buffer.len() - 1], next),
            Decoded::Incomplete
        );
        assert_eq!(decode(&buffer[..next + 3], next), Decoded::Incomplete);
        let mut damaged = buffer.clone();
        damaged[2] ^= 0x01;
        assert!(matches!(
            decode(&damaged, 0),
            Decoded::BadChecksum { .. } | Decoded::Incomplete
        ));
        let mut damaged = buffer.clone();
        damaged[FRAME_HEADER + 1] ^= 0x40;
        assert_eq!(decode(&damaged, 0), Decoded::BadChecksum { end: next });
    }
}
