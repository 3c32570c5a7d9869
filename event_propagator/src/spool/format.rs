//! The spool's record format, with no I/O: encoding a record and scanning a segment's bytes
//! back into records, telling intact records from a torn tail and from corruption.
//!
//! A record is `MAGIC (4) | length (u32 LE) | CRC-32 of length and payload (u32 LE) | payload`.
//! The payload is an *add* (`1 | key length (u8) | key | generated at, µs since the epoch (i64
//! LE) | body`) or a *done* (`2 | key`). The magic lets a scan find the next record after a
//! damaged one, whatever the damage did to the length, so a flipped byte costs the record it
//! lies in and nothing after it; the checksum tells a damaged record from an intact one (a false
//! match is a 1 in 2³² chance per candidate).

use std::ops::Range;

/// Starts every record. Not ASCII, so JSON text seldom contains it.
pub const MAGIC: [u8; 4] = [0xE5, 0x5B, 0x0A, 0xD1];
/// Magic, length and checksum.
pub const HEADER_BYTES: usize = 12;
/// Add payload bytes besides the key and the body: kind, key length, time.
const ADD_FIXED_BYTES: usize = 1 + 1 + 8;
/// A length above this is damage: far above any event the consumer takes.
const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

const ADD: u8 = 1;
const DONE: u8 = 2;

/// One record, borrowing from the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// An event entered the spool.
    Add {
        key: &'a str,
        generated_at_micros: i64,
        body: &'a [u8],
    },
    /// The consumer settled the event with this key (delivered, or rejected and dead-lettered).
    Done { key: &'a str },
}

/// What a scan of a segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan<'a> {
    pub records: Vec<Record<'a>>,
    /// Damaged stretches, each followed by an intact record or ending with the segment.
    pub corrupt: Vec<Range<usize>>,
    /// A record cut short at the end (a write the process or the machine did not finish).
    pub torn_tail: Option<Range<usize>>,
}

/// The bytes of an add record.
pub fn encode_add(key: &str, generated_at_micros: i64, body: &[u8], out: &mut Vec<u8>) {
    let key = &key.as_bytes()[..key.len().min(u8::MAX as usize)];
    let payload_len = ADD_FIXED_BYTES + key.len() + body.len();
    let start = begin(payload_len, out);
    out.push(ADD);
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(&generated_at_micros.to_le_bytes());
    out.extend_from_slice(body);
    seal(start, out);
}

/// The bytes of a done record.
pub fn encode_done(key: &str, out: &mut Vec<u8>) {
    let start = begin(1 + key.len(), out);
    out.push(DONE);
    out.extend_from_slice(key.as_bytes());
    seal(start, out);
}

/// How many bytes the add record of an event takes.
pub fn add_len(key_len: usize, body_len: usize) -> usize {
    HEADER_BYTES + ADD_FIXED_BYTES + key_len + body_len
}

fn begin(payload_len: usize, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    start
}

/// Writes the checksum of the record that starts at `start` (over length and payload).
fn seal(start: usize, out: &mut [u8]) {
    let crc = crc32_of(&[&out[start + 4..start + 8], &out[start + HEADER_BYTES..]]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Why no record can be read at a position.
enum Unreadable {
    /// Its header or payload goes past the end: cut short, if nothing intact follows.
    Short,
    /// Wrong magic, checksum or contents.
    Damaged,
}

/// Reads the record at `at`, returning it and where the next one starts.
fn read_at(bytes: &[u8], at: usize) -> Result<(Record<'_>, usize), Unreadable> {
    let rest = &bytes[at..];
    if rest.len() < HEADER_BYTES {
        return Err(if MAGIC.starts_with(&rest[..rest.len().min(4)]) {
            Unreadable::Short
        } else {
            Unreadable::Damaged
        });
    }
    if rest[..4] != MAGIC {
        return Err(Unreadable::Damaged);
    }
    let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return Err(Unreadable::Damaged);
    }
    let Some(payload) = rest.get(HEADER_BYTES..HEADER_BYTES + len) else {
        return Err(Unreadable::Short);
    };
    let crc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
    if crc32_of(&[&rest[4..8], payload]) != crc {
        return Err(Unreadable::Damaged);
    }
    let record = parse_payload(payload).ok_or(Unreadable::Damaged)?;
    Ok((record, at + HEADER_BYTES + len))
}

fn parse_payload(payload: &[u8]) -> Option<Record<'_>> {
    let (&kind, rest) = payload.split_first()?;
    match kind {
        ADD => {
            let (&key_len, rest) = rest.split_first()?;
            let key = std::str::from_utf8(rest.get(..key_len as usize)?).ok()?;
            let rest = &rest[key_len as usize..];
            let time: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            Some(Record::Add {
                key,
                generated_at_micros: i64::from_le_bytes(time),
                body: &rest[8..],
            })
        }
        DONE => Some(Record::Done {
            key: std::str::from_utf8(rest).ok()?,
        }),
        _ => None,
    }
}

/// Reads every intact record of a segment, in order. After an unreadable stretch the scan goes
/// on at the next position that holds an intact record; an unreadable stretch that nothing
/// intact follows is a torn tail when it was cut short, corruption otherwise.
pub fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut scan = Scan::default();
    let mut at = 0;
    while at < bytes.len() {
        match read_at(bytes, at) {
            Ok((record, next)) => {
                scan.records.push(record);
                at = next;
            }
            Err(unreadable) => {
                let resume = (at + 1..bytes.len())
                    .find(|&p| bytes[p..].starts_with(&MAGIC) && read_at(bytes, p).is_ok());
                match (resume, unreadable) {
                    (Some(next), _) => {
                        scan.corrupt.push(at..next);
                        at = next;
                    }
                    (None, Unreadable::Short) => {
                        scan.torn_tail = Some(at..bytes.len());
                        break;
                    }
                    (None, Unreadable::Damaged) => {
                        scan.corrupt.push(at..bytes.len());
                        break;
                    }
                }
            }
        }
    }
    scan
}

/// The CRC-32 of the parts, end to end: IEEE 802.3's, as gzip's, computed by flate2's `Crc`
/// (crc32fast), which the gzip of request bodies already links in, rather than a second one.
pub fn crc32_of(parts: &[&[u8]]) -> u32 {
    let mut crc = flate2::Crc::new();
    for part in parts {
        crc.update(part);
    }
    crc.sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_records() -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for (i, body) in [&b"{\"a\":1}"[..], b"{\"b\":\"two\"}", b"{}"]
            .iter()
            .enumerate()
        {
            starts.push(bytes.len());
            encode_add(
                &format!("key-{i}"),
                1_700_000_000_000_000 + i as i64,
                body,
                &mut bytes,
            );
        }
        starts.push(bytes.len());
        (bytes, starts)
    }

    #[test]
    fn the_checksum_is_the_standard_crc32() {
        // The check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32_of(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32_of(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    #[test]
    fn records_read_back_as_written() {
        let mut bytes = Vec::new();
        encode_add("k", -5, b"body", &mut bytes);
        assert_eq!(bytes.len(), add_len(1, 4));
        encode_done("k", &mut bytes);
        let scan = scan(&bytes);
        assert_eq!(
            scan.records,
            [
                Record::Add {
                    key: "k",
                    generated_at_micros: -5,
                    body: b"body"
                },
                Record::Done { key: "k" }
            ]
        );
        assert!(scan.corrupt.is_empty() && scan.torn_tail.is_none());
    }

    #[test]
    fn a_cut_at_every_offset_of_the_last_record_keeps_the_others_and_is_a_torn_tail() {
        let (bytes, starts) = three_records();
        for cut in starts[2] + 1..bytes.len() {
            let scan = scan(&bytes[..cut]);
            assert_eq!(scan.records.len(), 2, "cut at {cut}");
            assert_eq!(scan.torn_tail, Some(starts[2]..cut), "cut at {cut}");
            assert!(scan.corrupt.is_empty(), "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_in_a_middle_record_costs_only_that_record() {
        let (bytes, starts) = three_records();
        for at in starts[1]..starts[2] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let scan = scan(&damaged);
            let keys: Vec<_> = scan
                .records
                .iter()
                .map(|r| match r {
                    Record::Add { key, .. } | Record::Done { key } => *key,
                })
                .collect();
            assert_eq!(keys, ["key-0", "key-2"], "flip at {at}");
            assert_eq!(scan.corrupt, vec![(starts[1]..starts[2])], "flip at {at}");
        }
    }

    #[test]
    fn garbage_never_panics_and_yields_nothing_false() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..2_000 {
            let len = rng.usize(0..64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if rng.bool() {
                bytes.splice(0..0, MAGIC);
            }
            let scan = scan(&bytes);
            assert!(scan.records.is_empty(), "{bytes:?}");
        }
    }
}
