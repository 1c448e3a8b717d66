//! Content-defined chunk cuts: where a file's chunks end (manifest format 3).
//!
//! A chunk starts where the previous one ended (or at the file's start) and
//! ends at the first of these that exists:
//!
//! 1. right after the first *marker* ending from [`CDC_MIN_BYTES`] to
//!    [`CDC_MIN_BYTES`] + [`MARKER_REACH_BYTES`] past its start: the two
//!    bytes [`CUT_MARKER`] whose eight bytes before them, read as a
//!    little-endian `u64` and multiplied by [`CHECK_MULTIPLIER`], have their
//!    top [`CHECK_BITS`] bits zero. In random bytes (compressed archives,
//!    textures, audio: most of a game) a marker comes about every
//!    [`CUT_SPACING_BYTES`], and one is within reach 98 % of the time;
//! 2. where none is (text, tables of one repeated byte): right after the
//!    first position from [`CDC_MIN_BYTES`] on whose gear hash of the 64
//!    bytes before it has its top [`GEAR_BITS`] bits zero (also about every
//!    [`CUT_SPACING_BYTES`] in varied bytes);
//! 3. at [`CDC_MAX_BYTES`], or at the file's end.
//!
//! None is looked for past [`CDC_MAX_BYTES`] or the file's end.
//!
//! Whether a position is a cut depends on the few bytes before it only, so
//! bytes inserted into a file change the chunks around the insertion and
//! the cuts meet the old ones again after it.
//!
//! Why a marker: the search for a marker is `memchr`'s substring search
//! (SIMD, 37 GB/s over random bytes on one core here), where format 2's
//! gear hash at every byte past the minimum is a chain of dependent steps
//! (9.3 GB/s with four chains at once). On this project's two-core machine
//! that search held a first scan at two thirds of `b3sum`'s speed; with the
//! marker search it runs at about nine tenths. The gear hash is kept, as
//! four chains over neighbouring stretches, for what has no marker within
//! reach: text's search runs at 5.9 GB/s. The rule and its measurements
//! are in `docs/DECISIONS.md` ("Chunk boundaries").

use std::sync::OnceLock;

use memchr::memmem::Finder;

/// No cut closer than this to the previous one (the last chunk of a file
/// may be shorter).
pub const CDC_MIN_BYTES: u32 = 768 << 10;
/// A cut at the latest here.
pub const CDC_MAX_BYTES: u32 = 4 << 20;
/// Past the minimum, a cut comes about this often in random bytes: a
/// marker is 2 bytes (1 in 2^16) and its check passes 1 time in 2^2.
pub const CUT_SPACING_BYTES: u32 = 1 << (16 + CHECK_BITS);

/// The two bytes a cut follows. Neither is ASCII, 0x00, 0xFF or a
/// test-pattern byte (0x55, 0xAA), so runs of padding do not hold one
/// marker after another.
pub const CUT_MARKER: [u8; 2] = [0x8f, 0xe1];
/// A marker counts when its check (the 8 bytes before it times this) has
/// the top [`CHECK_BITS`] bits zero: the cut depends on 10 bytes, not 2.
pub const CHECK_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
/// Bits of the check that must be zero.
pub const CHECK_BITS: u32 = 2;
/// How far past the minimum a marker is looked for: four spacings. Text
/// has no marker; searching it to the maximum before the gear hash took
/// longer than the gear hash.
pub const MARKER_REACH_BYTES: u32 = 4 * CUT_SPACING_BYTES;
/// Bits of the gear hash that must be zero where no marker is found.
pub const GEAR_BITS: u32 = 18;
/// Bytes a marker and its check cover.
const MARKER_SPAN: usize = 8 + CUT_MARKER.len();
/// A gear hash depends on this many of the last bytes only.
const GEAR_MEMORY: usize = 64;
/// Ends each of the four chains of [`gear_four`] covers.
const STRETCH: usize = 4096;

// A search from the minimum reads the bytes before it, inside the chunk.
const _: () = assert!(MARKER_SPAN <= GEAR_MEMORY && GEAR_MEMORY <= CDC_MIN_BYTES as usize);
const _: () = assert!(CDC_MAX_BYTES > CDC_MIN_BYTES);

fn marker_finder() -> &'static Finder<'static> {
    static FINDER: OnceLock<Finder<'static>> = OnceLock::new();
    FINDER.get_or_init(|| Finder::new(&CUT_MARKER).into_owned())
}

/// The gear table: 256 values of SplitMix64 from seed 0 (part of the
/// format).
fn gear_table() -> &'static [u64; 256] {
    static TABLE: OnceLock<[u64; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut state = 0u64;
        std::array::from_fn(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    })
}

/// The chunks `(start, len)` of `data` (a file's bytes from a cut on):
/// the same cuts as over the whole file, because a cut is only looked for
/// where [`CDC_MAX_BYTES`] bytes are in view, or at the file's end.
pub fn cut_points(data: &[u8], at_end: bool) -> Vec<(usize, usize)> {
    let mut cuts = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let remaining = data.len() - start;
        if remaining < CDC_MAX_BYTES as usize && !at_end {
            break;
        }
        let len = cut(&data[start..]);
        cuts.push((start, len));
        start += len;
    }
    cuts
}

/// The length of the chunk that starts `source` (not empty).
fn cut(source: &[u8]) -> usize {
    let min = CDC_MIN_BYTES as usize;
    if source.len() <= min {
        return source.len();
    }
    let limit = source.len().min(CDC_MAX_BYTES as usize);
    marker_cut(source, min, limit.min(min + MARKER_REACH_BYTES as usize))
        .or_else(|| gear_cut(source, min, limit))
        .unwrap_or(limit)
}

/// Whether a marker ending at `end` passes its check.
#[inline]
fn marker_checks(source: &[u8], end: usize) -> bool {
    let before = end - MARKER_SPAN;
    let mut word = [0u8; 8];
    word.copy_from_slice(&source[before..before + 8]);
    u64::from_le_bytes(word).wrapping_mul(CHECK_MULTIPLIER) >> (64 - CHECK_BITS) == 0
}

/// The first `end` in `min..=limit` right after a marker that passes.
fn marker_cut(source: &[u8], min: usize, limit: usize) -> Option<usize> {
    let from = min - CUT_MARKER.len();
    marker_finder()
        .find_iter(&source[from..limit])
        .map(|at| from + at + CUT_MARKER.len())
        .find(|&end| marker_checks(source, end))
}

/// Whether a gear hash marks a cut.
#[inline]
fn gear_checks(hash: u64) -> bool {
    hash >> (64 - GEAR_BITS) == 0
}

/// One step of a gear hash: older bytes shift out, so after
/// [`GEAR_MEMORY`] steps the hash is that of the last 64 bytes alone.
#[inline(always)]
fn roll(hash: u64, byte: u8, table: &[u64; 256]) -> u64 {
    (hash << 1).wrapping_add(table[byte as usize])
}

/// The gear hash of the [`GEAR_MEMORY`] bytes before `end`.
fn gear_hash(source: &[u8], end: usize, table: &[u64; 256]) -> u64 {
    source[end - GEAR_MEMORY..end]
        .iter()
        .fold(0, |hash, &byte| roll(hash, byte, table))
}

/// The first `end` in `min..=limit` whose gear hash of the
/// [`GEAR_MEMORY`] bytes before it marks a cut.
fn gear_cut(source: &[u8], min: usize, limit: usize) -> Option<usize> {
    let table = gear_table();
    let mut before = min - 1;
    while before + 4 * STRETCH <= limit {
        if let Some(end) = gear_four(source, before, table) {
            return Some(end);
        }
        before += 4 * STRETCH;
    }
    gear_one(source, before, limit, table)
}

/// The first `end` in `before + 1..=to` whose gear hash marks a cut, one
/// byte after the other.
fn gear_one(source: &[u8], before: usize, to: usize, table: &[u64; 256]) -> Option<usize> {
    let mut hash = gear_hash(source, before, table);
    for (step, &byte) in source[before..to].iter().enumerate() {
        hash = roll(hash, byte, table);
        if gear_checks(hash) {
            return Some(before + step + 1);
        }
    }
    None
}

/// [`gear_one`] over `before + 1..=before + 4 * STRETCH` as four
/// independent chains over neighbouring stretches (a single chain is one
/// long dependency, a cycle and a half per byte): each starts from the
/// hash of the 64 bytes before its stretch.
fn gear_four(source: &[u8], before: usize, table: &[u64; 256]) -> Option<usize> {
    let starts: [usize; 4] = std::array::from_fn(|lane| before + lane * STRETCH);
    let mut hashes = starts.map(|start| gear_hash(source, start, table));
    let block = &source[before..before + 4 * STRETCH];
    let (a, rest) = block.split_at(STRETCH);
    let (b, rest) = rest.split_at(STRETCH);
    let (c, d) = rest.split_at(STRETCH);
    let steps = a.iter().zip(b).zip(c.iter().zip(d));
    for (step, ((&a, &b), (&c, &d))) in steps.enumerate() {
        for (lane, byte) in [a, b, c, d].into_iter().enumerate() {
            hashes[lane] = roll(hashes[lane], byte, table);
        }
        // All four tested at once (a cut is rare: no branch per lane).
        if !hashes
            .iter()
            .fold(false, |hit, &hash| hit | gear_checks(hash))
        {
            continue;
        }
        if let Some(lane) = hashes.iter().position(|&hash| gear_checks(hash)) {
            // A lane before the first one cutting here may cut further on
            // in its own stretch, which comes earlier in the file.
            let earlier =
                (0..lane).find_map(|e| gear_one(source, starts[e], starts[e] + STRETCH, table));
            return earlier.or(Some(starts[lane] + step + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    /// The rule as written in the module's comment, one position at a
    /// time (the same checks of a marker and of a gear hash): the
    /// definition the fast searches (`memchr`, four gear chains) must match.
    fn reference(data: &[u8]) -> Vec<(usize, usize)> {
        let (min, max) = (CDC_MIN_BYTES as usize, CDC_MAX_BYTES as usize);
        let table = gear_table();
        let mut cuts = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let chunk = &data[start..];
            let len = if chunk.len() <= min {
                chunk.len()
            } else {
                let limit = chunk.len().min(max);
                let reach = limit.min(min + MARKER_REACH_BYTES as usize);
                let marker = (min..=reach)
                    .find(|&end| chunk[end - 2..end] == CUT_MARKER && marker_checks(chunk, end));
                marker
                    .or_else(|| {
                        (min..=limit).find(|&end| gear_checks(gear_hash(chunk, end, table)))
                    })
                    .unwrap_or(limit)
            };
            cuts.push((start, len));
            start += len;
        }
        cuts
    }

    fn random(seed: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
        data
    }

    /// `len` bytes of words of lowercase letters and spaces (no marker).
    fn text(seed: u64, len: usize) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len)
            .map(|_| match rng.random_range(0..6) {
                0 => b' ',
                _ => b'a' + rng.random_range(0..26),
            })
            .collect()
    }

    #[test]
    fn the_cuts_follow_the_written_rule() {
        let random = random(11, 48 << 20);
        let (min, max) = (CDC_MIN_BYTES as usize, CDC_MAX_BYTES as usize);
        for len in [
            0,
            1,
            min - 1,
            min,
            min + 1,
            max - 1,
            max,
            max + 1,
            (7 << 20) + 12345,
        ] {
            let data = &random[..len];
            assert_eq!(cut_points(data, true), reference(data), "{len}");
        }
        assert_eq!(cut_points(&random, true), reference(&random));
        // Text has no marker: the gear hash cuts it.
        let text = text(3, 16 << 20);
        assert_eq!(cut_points(&text, true), reference(&text));
        // One repeated byte: no cut but the maximum.
        let zeros = vec![0u8; 9 << 20];
        assert_eq!(cut_points(&zeros, true), reference(&zeros));
        assert!(
            cut_points(&zeros, true)
                .iter()
                .rev()
                .skip(1)
                .all(|c| c.1 == max)
        );
        // Markers everywhere, most of them failing their check; and
        // markers planted where a search begins and ends.
        let mut dense = random[..12 << 20].to_vec();
        for (index, pair) in dense.chunks_exact_mut(7).enumerate() {
            if index % 3 != 0 {
                pair[5..7].copy_from_slice(&CUT_MARKER);
            }
        }
        assert_eq!(cut_points(&dense, true), reference(&dense));
        let mut planted = text[..10 << 20].to_vec();
        let reach = MARKER_REACH_BYTES as usize;
        // At the minimum, at the end of a marker's reach, one byte past it.
        let past = 3 * min + 2 * reach + 1;
        for end in [min, 2 * min + reach, past] {
            planted[end - 2..end].copy_from_slice(&CUT_MARKER);
            planted[end - 10..end - 2].fill(0);
        }
        let cuts = cut_points(&planted, true);
        assert_eq!(cuts, reference(&planted));
        assert_eq!(cuts[0], (0, min));
        assert_eq!(cuts[1], (min, min + reach));
        assert_ne!(cuts[2].0 + cuts[2].1, past);
        // In text, 64 bytes whose gear hash cuts, ending right at the
        // minimum (found by trying random text).
        let table = gear_table();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let block = loop {
            let block: Vec<u8> = (0..GEAR_MEMORY)
                .map(|_| b'a' + rng.random_range(0..26))
                .collect();
            if gear_checks(gear_hash(&block, GEAR_MEMORY, table)) {
                break block;
            }
        };
        let mut planted = text[..3 << 20].to_vec();
        planted[min - GEAR_MEMORY..min].copy_from_slice(&block);
        // The next chunk's search runs four chains over neighbouring
        // stretches: the second chain meets a cut first, the first one's
        // (later in its stretch) is earlier in the file.
        let first = 2 * min + STRETCH - 50;
        for end in [first, 2 * min + STRETCH + 100] {
            planted[end - GEAR_MEMORY..end].copy_from_slice(&block);
        }
        let cuts = cut_points(&planted, true);
        assert_eq!(cuts, reference(&planted));
        assert_eq!(cuts[..2], [(0, min), (min, first - min)]);
    }

    #[test]
    fn a_window_that_does_not_reach_the_end_cuts_only_where_the_maximum_is_in_view() {
        let data = random(5, 20 << 20);
        let whole = cut_points(&data, true);
        let partial = cut_points(&data[..9 << 20], false);
        assert!(!partial.is_empty());
        assert_eq!(partial[..], whole[..partial.len()]);
        // The last cut had the maximum in view; the next would not have.
        let (start, len) = partial[partial.len() - 1];
        assert!(start + CDC_MAX_BYTES as usize <= 9 << 20);
        assert!((9 << 20) - (start + len) < CDC_MAX_BYTES as usize);
    }

    #[test]
    fn chunks_average_about_a_mebibyte_in_random_bytes_and_in_text() {
        let expected = f64::from(CDC_MIN_BYTES + CUT_SPACING_BYTES);
        for (what, data) in [
            ("random", random(9, 128 << 20)),
            ("text", text(9, 64 << 20)),
        ] {
            let cuts = cut_points(&data, true);
            let mean = data.len() as f64 / cuts.len() as f64;
            assert!(
                (mean / expected - 1.0).abs() < 0.1,
                "{what}: mean chunk {mean:.0} bytes, expected about {expected}"
            );
        }
    }
}
