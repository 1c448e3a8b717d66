//! Content-defined chunk cuts: where a file's chunks end.
//!
//! The cuts are FastCDC 2020's (the `fastcdc` crate, normalisation level 1,
//! seed 0) with [`CDC_MIN_BYTES`], [`CDC_MASK_BYTES`] and [`CDC_MAX_BYTES`]:
//! they are part of the manifest format, so every lanspread must find the
//! same ones. With these sizes the crate's search is simple: after the
//! minimum, a gear hash `h = (h << 1) + GEAR[byte]` (started at 0 at the
//! minimum) is rolled byte by byte until `h & mask == 0` (the mask shifted
//! left by one on even positions, as the crate tests two bytes per step),
//! or the maximum is reached.
//!
//! That search is one long dependency chain, about a cycle and a half per
//! byte, and it ran on every byte after each chunk's minimum before the
//! chunk could be hashed: a third of a first scan's CPU time. Here the same
//! search runs as four independent chains over four neighbouring stretches
//! at once. A gear hash forgets a byte 64 steps later, so each stretch
//! starts with the hash of the 64 bytes before it and finds exactly the
//! crate's values. The test compares the cuts with the crate's on random
//! and repetitive data.

use std::sync::OnceLock;

/// No cut closer than this to the previous one (the last chunk of a file
/// may be shorter).
pub const CDC_MIN_BYTES: u32 = 768 << 10;
/// FastCDC's "average" size, which sets the gear hash's mask: past the
/// minimum, a cut comes about every 256 KiB.
pub const CDC_MASK_BYTES: u32 = 512 << 10;
/// A cut at the latest here.
pub const CDC_MAX_BYTES: u32 = 4 << 20;

/// Bytes each of the four chains covers per step of the search.
const STRETCH: usize = 4096;
/// A gear hash depends on this many of the last bytes only.
const GEAR_MEMORY: usize = 64;

struct Gear {
    table: Box<[u64; 256]>,
    /// The mask tested at odd positions.
    mask: u64,
    /// At even positions the crate tests `(h << 1) & (mask << 1)`, which
    /// is `h & mask` without the top bit.
    mask_even: u64,
}

fn gear() -> &'static Gear {
    static GEAR: OnceLock<Gear> = OnceLock::new();
    GEAR.get_or_init(|| {
        let (table, _) = fastcdc::v2020::get_gear_with_seed(0);
        // Level 1 normalisation: one bit fewer than the average's after
        // the average (here the whole search: the average is below the
        // minimum).
        let bits = fastcdc::v2020::logarithm2(CDC_MASK_BYTES) - 1;
        let mask = fastcdc::v2020::MASKS[bits as usize];
        Gear {
            table,
            mask,
            mask_even: mask & (u64::MAX >> 1),
        }
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
        if len == 0 {
            break;
        }
        cuts.push((start, len));
        start += len;
    }
    cuts
}

/// The length of the chunk that starts `source`.
fn cut(source: &[u8]) -> usize {
    let min = CDC_MIN_BYTES as usize;
    if source.len() <= min {
        return source.len();
    }
    let limit = source.len().min(CDC_MAX_BYTES as usize);
    // The crate tests two bytes per step: an odd last byte is not tested.
    let end = limit & !1;
    let gear = gear();
    let mut from = min;
    while from + 4 * STRETCH <= end {
        if let Some(at) = search_four(source, min, from, gear) {
            return at;
        }
        from += 4 * STRETCH;
    }
    search_one(source, min, from, end, gear).unwrap_or(limit)
}

/// The hash at `at` (before `source[at]` is added), rolled from `min`:
/// only the last [`GEAR_MEMORY`] bytes count.
fn warm(source: &[u8], min: usize, at: usize, gear: &Gear) -> u64 {
    let mut hash = 0u64;
    for &byte in &source[at.saturating_sub(GEAR_MEMORY).max(min)..at] {
        hash = (hash << 1).wrapping_add(gear.table[byte as usize]);
    }
    hash
}

/// Whether the hash after adding the byte at `position` marks a cut there.
#[inline(always)]
fn is_cut(hash: u64, position: usize, gear: &Gear) -> bool {
    if position & 1 == 0 {
        hash & gear.mask_even == 0
    } else {
        hash & gear.mask == 0
    }
}

/// The first cut in `from..from + 4 * STRETCH`, searched as four chains.
fn search_four(source: &[u8], min: usize, from: usize, gear: &Gear) -> Option<usize> {
    let block = &source[from..from + 4 * STRETCH];
    let (a, rest) = block.split_at(STRETCH);
    let (b, rest) = rest.split_at(STRETCH);
    let (c, d) = rest.split_at(STRETCH);
    let mut hashes = [
        warm(source, min, from, gear),
        warm(source, min, from + STRETCH, gear),
        warm(source, min, from + 2 * STRETCH, gear),
        warm(source, min, from + 3 * STRETCH, gear),
    ];
    let table = &gear.table;
    let (mask, mask_even) = (gear.mask, gear.mask_even);
    // `from` and STRETCH are even: all four chains share a parity, and
    // each step adds an even byte, then an odd one.
    let steps = a
        .chunks_exact(2)
        .zip(b.chunks_exact(2))
        .zip(c.chunks_exact(2).zip(d.chunks_exact(2)));
    for (step, ((a, b), (c, d))) in steps.enumerate() {
        let mut even = [0u64; 4];
        for (lane, pair) in [a, b, c, d].into_iter().enumerate() {
            let hash = (hashes[lane] << 1).wrapping_add(table[pair[0] as usize]);
            even[lane] = hash;
            hashes[lane] = (hash << 1).wrapping_add(table[pair[1] as usize]);
        }
        let hit = (even[0] & mask_even == 0)
            | (even[1] & mask_even == 0)
            | (even[2] & mask_even == 0)
            | (even[3] & mask_even == 0)
            | (hashes[0] & mask == 0)
            | (hashes[1] & mask == 0)
            | (hashes[2] & mask == 0)
            | (hashes[3] & mask == 0);
        if hit {
            // The earliest lane with a cut in this step (a lane's earlier
            // steps had none), then even before odd.
            for lane in 0..4 {
                let at = from + lane * STRETCH + 2 * step;
                if even[lane] & mask_even == 0 {
                    return first_in_lanes_before(source, min, from, lane, at, gear);
                }
                if hashes[lane] & mask == 0 {
                    return first_in_lanes_before(source, min, from, lane, at + 1, gear);
                }
            }
        }
    }
    None
}

/// A cut was found at `at` in `lane`; the lanes before it may hold an
/// earlier one further on in their stretch (they were only searched up to
/// the same step): the first cut of the block.
fn first_in_lanes_before(
    source: &[u8],
    min: usize,
    from: usize,
    lane: usize,
    at: usize,
    gear: &Gear,
) -> Option<usize> {
    for earlier in 0..lane {
        let begin = from + earlier * STRETCH;
        if let Some(cut) = search_one(source, min, begin, begin + STRETCH, gear) {
            return Some(cut);
        }
    }
    Some(at)
}

/// The first cut in `from..end`, one byte after the other.
fn search_one(source: &[u8], min: usize, from: usize, end: usize, gear: &Gear) -> Option<usize> {
    let mut hash = warm(source, min, from, gear);
    for (position, &byte) in source.iter().enumerate().take(end).skip(from) {
        hash = (hash << 1).wrapping_add(gear.table[byte as usize]);
        if is_cut(hash, position, gear) {
            return Some(position);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    /// The `fastcdc` crate's cuts, the definition.
    fn reference(data: &[u8], at_end: bool) -> Vec<(usize, usize)> {
        let chunker =
            fastcdc::v2020::FastCDC::new(data, CDC_MIN_BYTES, CDC_MASK_BYTES, CDC_MAX_BYTES);
        let mut cuts = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let remaining = data.len() - start;
            if remaining < CDC_MAX_BYTES as usize && !at_end {
                break;
            }
            let (_, end) = chunker.cut(start, remaining);
            if end <= start {
                break;
            }
            cuts.push((start, end - start));
            start = end;
        }
        cuts
    }

    #[test]
    fn the_cuts_are_the_fastcdc_crates() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut random = vec![0u8; 48 << 20];
        rng.fill_bytes(&mut random);
        // Random bytes, with odd and even lengths and ends.
        for len in [
            0,
            1,
            CDC_MIN_BYTES as usize,
            CDC_MIN_BYTES as usize + 1,
            CDC_MAX_BYTES as usize - 1,
            CDC_MAX_BYTES as usize + 1,
            (7 << 20) + 12345,
            random.len(),
        ] {
            for at_end in [true, false] {
                let data = &random[..len];
                assert_eq!(cut_points(data, at_end), reference(data, at_end), "{len}");
            }
        }
        // Repetitive data finds no cut (maximum-size chunks), and a short
        // repeating pattern with cuts at every turn.
        let zeros = vec![0u8; 9 << 20];
        assert_eq!(cut_points(&zeros, true), reference(&zeros, true));
        let pattern: Vec<u8> = (0..(9usize << 20)).map(|i| (i % 251) as u8).collect();
        assert_eq!(cut_points(&pattern, true), reference(&pattern, true));
        // Random bytes with zero runs: cuts land near stretch borders too.
        let mut mixed = random[..24 << 20].to_vec();
        for run in mixed.chunks_mut(300_001).step_by(2) {
            let zeros = 5000.min(run.len());
            run[..zeros].fill(0);
        }
        assert_eq!(cut_points(&mixed, true), reference(&mixed, true));
    }
}
