use std::io::{Read, Write};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use super::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// What flate2's decoder, the one this replaces, makes of `body`.
fn flate2_inflate(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn members_with_every_header_field_inflate_as_flate2_inflates_them() {
    let data = b"{\"event_type\":\"a\",\"event_payload\":\"b\"},".repeat(3000);
    let mut named = GzBuilder::new()
        .filename("events.json")
        .comment("a comment")
        .extra(vec![1, 2, 3, 4])
        .write(Vec::new(), Compression::best());
    named.write_all(&data[..5000]).unwrap();
    let mut body = named.finish().unwrap();
    body.extend(gzip(&data[5000..]));
    body.extend(gzip(b""));
    let expected = flate2_inflate(&body);
    assert_eq!(expected, data);
    assert_eq!(inflate(&body, data.len()).unwrap(), expected);
}

#[test]
fn the_limit_is_exact_and_no_more_than_one_byte_past_it_is_produced() {
    let data = vec![7u8; 100_000];
    let body = gzip(&data);
    assert_eq!(inflate(&body, 100_000).unwrap(), data);
    assert_eq!(
        inflate(&body, 99_999),
        Err(CodingError::TooLarge { limit: 99_999 })
    );
    assert_eq!(inflate(&body, 0), Err(CodingError::TooLarge { limit: 0 }));
}

#[test]
fn broken_members_are_corrupt_with_a_reason() {
    let good = gzip(b"{\"event_type\":\"a\",\"event_payload\":\"b\"}");
    let mut bad_crc = good.clone();
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 1;
    let mut bad_length = good.clone();
    let at = bad_length.len() - 1;
    bad_length[at] ^= 1;
    let mut flipped = good.clone();
    flipped[12] ^= 0xff;
    let mut reserved = good.clone();
    reserved[3] = 0x20;
    let cases: [(&str, Vec<u8>); 8] = [
        ("empty", Vec::new()),
        ("not gzip", b"{\"event_type\":\"a\"}".to_vec()),
        ("header cut", good[..6].to_vec()),
        ("deflate data cut", good[..good.len() - 12].to_vec()),
        ("trailer cut", good[..good.len() - 3].to_vec()),
        (
            "garbage after a member",
            [good.clone(), b"xyz".to_vec()].concat(),
        ),
        ("crc", bad_crc),
        ("reserved flags", reserved),
    ];
    for (what, body) in cases {
        assert!(
            matches!(inflate(&body, 1 << 20), Err(CodingError::Corrupt(_))),
            "{what}: {:?}",
            inflate(&body, 1 << 20)
        );
    }
    for (what, body) in [("length", bad_length), ("flipped deflate byte", flipped)] {
        assert!(
            inflate(&body, 1 << 20).is_err(),
            "{what}: {:?}",
            inflate(&body, 1 << 20)
        );
    }
}

/// The resident size of the stack mapping that holds `address`, in KiB, from /proc/self/smaps.
fn resident_kib_of_mapping_at(address: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                inside = (start..end).contains(&address);
                continue;
            }
        }
        if inside && first == "Rss:" {
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("no mapping holds {address:#x}");
}

#[test]
fn inflating_leaves_few_stack_pages_resident_on_the_thread_that_did_it() {
    let data = b"{\"event_type\":\"a\",\"event_payload\":\"b\"},".repeat(2000);
    let body = gzip(&data);
    // A stack size no other thread of the test binary uses (they get 2 MiB), so glibc cannot
    // hand this thread a cached stack that another thread already touched.
    let resident = std::thread::Builder::new()
        .stack_size(3 * 1024 * 1024 + 4096)
        .spawn(move || {
            let marker = 0u8;
            let address = std::ptr::addr_of!(marker) as usize;
            let out = inflate(&body, 1 << 20).unwrap();
            assert_eq!(out.len(), data.len());
            resident_kib_of_mapping_at(address)
        })
        .unwrap()
        .join()
        .unwrap();
    // flate2's decoder left 60 KiB (116 KiB unoptimised); this one 16 KiB (40 KiB).
    let bound = if cfg!(debug_assertions) { 64 } else { 32 };
    assert!(
        resident <= bound,
        "{resident} KiB of stack resident after inflating, bound {bound} KiB"
    );
}
