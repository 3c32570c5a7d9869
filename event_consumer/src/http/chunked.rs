//! The chunked transfer coding of request bodies (RFC 9112, section 7.1), decoded
//! incrementally as bytes arrive.

use super::head::{body_too_large, is_forbidden_control};
use super::limits::Limits;
use super::response::Response;
use super::status::Status;

/// Longest chunk-size line (size, extensions, CRLF). Nobody sends long extensions; a bound
/// keeps the decoder from spending the whole body deadline on one line.
const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// Incremental chunked decoder (RFC 9112, section 7.1). It consumes input as it arrives and
/// appends decoded data to the body, so the socket path never buffers a whole chunked body
/// in raw form and a body split over many reads is decoded once.
#[derive(Debug, Default)]
pub(super) struct ChunkedDecoder {
    state: ChunkState,
    /// Bytes of the current chunk-size line.
    line_bytes: usize,
    /// Bytes and lines of the trailer section, held to the head limits.
    trailer_bytes: usize,
    trailer_lines: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// At the first hex digit of a chunk size.
    #[default]
    SizeStart,
    Size(u64),
    /// Whitespace after the size: only more whitespace, `;` or CR may follow.
    SizeSpace(u64),
    /// A chunk extension, ignored up to CR.
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart,
    Trailer,
    TrailerLf {
        last: bool,
    },
    Done,
}

fn chunk_error(message: &str) -> Response {
    Response::error(
        Status::BadRequest,
        &format!("malformed chunked body: {message}"),
    )
}

impl ChunkedDecoder {
    /// Consumes bytes of `input`, appending decoded data to `body`. Returns how many bytes
    /// were consumed and whether the body (with its trailers) is complete; when it is not,
    /// all of `input` was consumed.
    pub(super) fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<(usize, bool), Response> {
        use ChunkState::*;
        let mut i = 0;
        while let Some(&byte) = input.get(i) {
            let state = self.state;
            if let Data(remaining) = state {
                let available = input.len() - i;
                let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                extend_bounded(
                    body,
                    input.get(i..i + take).unwrap_or_default(),
                    limits.max_body_bytes,
                );
                i += take;
                let left = remaining - take as u64;
                self.state = if left == 0 { DataCr } else { Data(left) };
                continue;
            }
            i += 1;
            self.state = match state {
                SizeStart => match hex_value(byte) {
                    Some(digit) => size_digit(0, digit, body.len(), limits)?,
                    None => return Err(chunk_error("chunk size is not a hex number")),
                },
                Size(size) => match byte {
                    b';' => Extension(size),
                    b' ' | b'\t' => SizeSpace(size),
                    b'\r' => SizeLf(size),
                    _ => match hex_value(byte) {
                        Some(digit) => size_digit(size, digit, body.len(), limits)?,
                        None => return Err(chunk_error("chunk size is not a hex number")),
                    },
                },
                SizeSpace(size) => match byte {
                    b' ' | b'\t' => SizeSpace(size),
                    b';' => Extension(size),
                    b'\r' => SizeLf(size),
                    _ => return Err(chunk_error("unexpected byte after the chunk size")),
                },
                Extension(size) => match byte {
                    b'\r' => SizeLf(size),
                    _ if is_forbidden_control(byte) => {
                        return Err(chunk_error("control byte in a chunk extension"))
                    }
                    _ => Extension(size),
                },
                SizeLf(size) => match byte {
                    b'\n' if size == 0 => TrailerStart,
                    b'\n' => Data(size),
                    _ => return Err(chunk_error("chunk size line does not end with CRLF")),
                },
                DataCr => match byte {
                    b'\r' => DataLf,
                    _ => return Err(chunk_error("chunk data is not followed by CRLF")),
                },
                DataLf => match byte {
                    b'\n' => SizeStart,
                    _ => return Err(chunk_error("chunk data is not followed by CRLF")),
                },
                TrailerStart => match byte {
                    b'\r' => TrailerLf { last: true },
                    b' ' | b'\t' => return Err(chunk_error("folded trailer line")),
                    _ if is_forbidden_control(byte) => {
                        return Err(chunk_error("control byte in a trailer"))
                    }
                    _ => {
                        self.trailer_lines += 1;
                        if self.trailer_lines > limits.max_headers {
                            return Err(Response::error(
                                Status::RequestHeaderFieldsTooLarge,
                                &format!(
                                    "request has more than {} trailer fields",
                                    limits.max_headers
                                ),
                            ));
                        }
                        Trailer
                    }
                },
                Trailer => match byte {
                    b'\r' => TrailerLf { last: false },
                    _ if is_forbidden_control(byte) => {
                        return Err(chunk_error("control byte in a trailer"))
                    }
                    _ => Trailer,
                },
                TrailerLf { last } => match byte {
                    b'\n' if last => Done,
                    b'\n' => TrailerStart,
                    _ => return Err(chunk_error("trailer line does not end with CRLF")),
                },
                Data(_) | Done => {
                    // Data is handled above; Done is never fed further (see below).
                    return Ok((i - 1, state == Done));
                }
            };
            match state {
                SizeStart | Size(_) | SizeSpace(_) | Extension(_) | SizeLf(_) => {
                    self.line_bytes += 1;
                    if self.line_bytes > MAX_CHUNK_LINE_BYTES {
                        return Err(chunk_error("chunk size line is too long"));
                    }
                    if matches!(state, SizeLf(_)) {
                        self.line_bytes = 0;
                    }
                }
                TrailerStart | Trailer | TrailerLf { .. } => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > limits.max_head_bytes {
                        return Err(Response::error(
                            Status::RequestHeaderFieldsTooLarge,
                            &format!(
                                "request trailers are larger than {} bytes",
                                limits.max_head_bytes
                            ),
                        ));
                    }
                }
                Data(_) | DataCr | DataLf | Done => {}
            }
            if self.state == Done {
                return Ok((i, true));
            }
        }
        Ok((i, self.state == Done))
    }
}

fn hex_value(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

/// Adds a hex digit to a chunk size, refusing (413) as soon as the body would pass the limit.
fn size_digit(
    size: u64,
    digit: u64,
    decoded: usize,
    limits: &Limits,
) -> Result<ChunkState, Response> {
    let size = size
        .checked_mul(16)
        .and_then(|size| size.checked_add(digit))
        .ok_or_else(|| body_too_large(limits))?;
    let total = (decoded as u64).saturating_add(size);
    if total > limits.max_body_bytes as u64 {
        return Err(body_too_large(limits));
    }
    Ok(ChunkState::Size(size))
}

/// Appends `data`, growing the allocation geometrically but never past `max` (the caller has
/// checked that `body.len() + data.len() <= max`).
pub(super) fn extend_bounded(body: &mut Vec<u8>, data: &[u8], max: usize) {
    let needed = body.len() + data.len();
    if needed > body.capacity() {
        let target = body
            .capacity()
            .saturating_mul(2)
            .max(needed)
            .max(256)
            .min(max.max(needed));
        body.reserve_exact(target - body.len());
    }
    body.extend_from_slice(data);
}
