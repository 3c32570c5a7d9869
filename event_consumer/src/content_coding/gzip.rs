//! gzip (RFC 1952) bodies, one member or several in a row, inflated with miniz_oxide's core
//! decompressor into one buffer that never grows past the limit.
//!
//! Not flate2's `GzDecoder`: its inflater state (43 KiB, mostly the 32 KiB window) is built
//! on the stack before it is boxed, and a connection thread keeps every stack page it touched
//! for as long as the connection stays open: one gzip request left 64 KiB of stack resident
//! instead of 16 KiB, charged to a memory cgroup per keep-alive connection. Here the
//! decompressor (11 KiB) is built on the heap and the output buffer is the window.

use miniz_oxide::inflate::core::inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use super::CodingError;

/// The header flags of RFC 1952, section 2.3.1.
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// The output buffer's first size at most; it doubles as needed, up to the limit + 1.
const FIRST_OUTPUT_BYTES: usize = 16 * 1024;

/// Inflates every member of `body`; at most `limit` bytes of output, else `TooLarge` (one
/// byte past the limit is the most ever produced).
pub fn inflate(body: &[u8], limit: usize) -> Result<Vec<u8>, CodingError> {
    if body.is_empty() {
        return Err(corrupt("the body is empty"));
    }
    let cap = limit.saturating_add(1);
    let mut out = vec![
        0;
        body.len()
            .saturating_mul(4)
            .clamp(1, FIRST_OUTPUT_BYTES)
            .min(cap)
    ];
    let mut filled = 0;
    let mut decompressor = Box::<DecompressorOxide>::default();
    let mut rest = body;
    while !rest.is_empty() {
        rest = &rest[header_len(rest)?..];
        let start = filled;
        decompressor.init();
        loop {
            if filled == out.len() {
                if out.len() >= cap {
                    return Err(CodingError::TooLarge { limit });
                }
                out.resize(out.len().saturating_mul(2).min(cap), 0);
            }
            // The member's own output is its window: a member cannot reach into the one before.
            let (status, read, written) = decompress(
                &mut decompressor,
                rest,
                &mut out[start..],
                filled - start,
                TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
            );
            rest = rest.get(read..).unwrap_or_default();
            filled += written;
            match status {
                TINFLStatus::Done => break,
                TINFLStatus::HasMoreOutput => {}
                TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                    return Err(corrupt("the deflate data ends early"))
                }
                _ => return Err(corrupt("the deflate data is invalid")),
            }
        }
        if filled > limit {
            return Err(CodingError::TooLarge { limit });
        }
        rest = check_trailer(rest, &out[start..filled])?;
    }
    out.truncate(filled);
    Ok(out)
}

/// The length of the member header at the start of `data`.
fn header_len(data: &[u8]) -> Result<usize, CodingError> {
    let fixed = data
        .get(..10)
        .ok_or_else(|| corrupt("the header ends early"))?;
    if fixed[..3] != [0x1f, 0x8b, 8] {
        return Err(corrupt(
            "not a gzip member (magic bytes and deflate method)",
        ));
    }
    let flags = fixed[3];
    if flags & RESERVED != 0 {
        return Err(corrupt("reserved header flags are set"));
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = data
            .get(at..at + 2)
            .ok_or_else(|| corrupt("the header ends early"))?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let field = data.get(at..).unwrap_or_default();
            let end = field
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| corrupt("the header ends early"))?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > data.len() {
        return Err(corrupt("the header ends early"));
    }
    Ok(at)
}

/// Checks the member's CRC-32 and length against `member` (its output); returns what follows.
fn check_trailer<'a>(data: &'a [u8], member: &[u8]) -> Result<&'a [u8], CodingError> {
    let trailer = data
        .get(..8)
        .ok_or_else(|| corrupt("the trailer ends early"))?;
    let mut crc = flate2::Crc::new();
    crc.update(member);
    let expected_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let expected_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    // ISIZE is the length modulo 2^32.
    if crc.sum() != expected_crc || member.len() as u32 != expected_len {
        return Err(corrupt(
            "the CRC or the length in the trailer does not match",
        ));
    }
    Ok(&data[8..])
}

fn corrupt(why: &str) -> CodingError {
    CodingError::Corrupt(why.to_owned())
}

#[cfg(test)]
mod tests;
