//! Chunk bytes in reused blocks of one size, on both sides of a transfer.
//!
//! A download holds tens of pieces of 0.25 to 4 MiB at any time (in
//! flight, waiting for their hash check, waiting for the disk) and a seeder
//! one 256 KiB read per piece that quinn has not yet seen acknowledged.
//! Allocated and freed per piece, such buffers cost a page fault and a
//! zeroed page per 4 KiB when the allocator maps them fresh, and otherwise
//! leave holes of every size in its heaps that it keeps: a downloader grew
//! from 49 MiB at a 1 GiB game to 81–88 MiB at 8 GiB. A pool of buffers
//! of those varied sizes did not help (it kept 50 MB: a free buffer too
//! small for the next piece sits beside a new one). So a piece is held in
//! blocks of [`BLOCK_BYTES`], all alike: any free block serves the next
//! piece, the blocks alive at once are never more than the bytes in hand
//! need, and the allocator sees one size only.
//!
//! The pool keeps at most [`MAX_POOLED_BLOCKS`] free blocks (the rest are
//! freed), so what it retains after a download is bounded as well.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// The size of every pooled block (and of a seeder's reads).
pub const BLOCK_BYTES: usize = 256 << 10;

/// Free blocks kept at most (32 MiB: more than the 24 MiB of pieces a
/// download holds, with room for a seeder's reads).
pub const MAX_POOLED_BLOCKS: usize = 128;

/// The process's pool, shared by its downloads and its serving.
pub fn chunk_buffers() -> &'static BufferPool {
    static POOL: LazyLock<BufferPool> = LazyLock::new(|| BufferPool::new(MAX_POOLED_BLOCKS));
    &POOL
}

/// Free blocks, handed out most recently used first (their pages are the
/// likeliest to be in the cache) and given back when a [`Block`] drops.
pub struct BufferPool {
    shared: Arc<Shared>,
}

struct Shared {
    free: Mutex<Vec<Vec<u8>>>,
    max_blocks: usize,
}

impl BufferPool {
    pub fn new(max_blocks: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                free: Mutex::new(Vec::new()),
                max_blocks,
            }),
        }
    }

    /// A block of `len` bytes (at most [`BLOCK_BYTES`]; longer ones are
    /// plain buffers, not kept). Its contents are unspecified (the bytes of
    /// an earlier use, or zeros): fill all of it before reading.
    pub fn block(&self, len: usize) -> Block {
        if len > BLOCK_BYTES {
            return Block {
                bytes: vec![0; len],
                len,
                pool: None,
            };
        }
        let reused = self.shared.lock().pop();
        let mut bytes = reused.unwrap_or_else(|| Vec::with_capacity(BLOCK_BYTES));
        // A block keeps the length it was last filled to, so bytes once
        // written are not zeroed again; only a longer use zeroes its tail.
        if bytes.len() < len {
            bytes.resize(len, 0);
        }
        Block {
            bytes,
            len,
            pool: Some(self.shared.clone()),
        }
    }

    /// Free blocks held (tests and `Debug`).
    pub fn pooled_blocks(&self) -> usize {
        self.shared.lock().len()
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("pooled_blocks", &self.pooled_blocks())
            .field("max_blocks", &self.shared.max_blocks)
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // Every update is one push or pop: a panic elsewhere leaves the
        // list consistent.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give_back(&self, block: Vec<u8>) {
        let mut free = self.lock();
        if free.len() < self.max_blocks {
            free.push(block);
        }
    }
}

/// A block from a [`BufferPool`]; it goes back to the pool when dropped
/// (also when wrapped by [`Block::into_bytes`] and dropped by quinn).
pub struct Block {
    /// Initialised up to its length, which is at least `len`.
    bytes: Vec<u8>,
    len: usize,
    pool: Option<Arc<Shared>>,
}

impl Block {
    /// As [`bytes::Bytes`] without a copy; the block returns to the pool
    /// when the last `Bytes` of it drops.
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from_owner(self)
    }
}

impl std::ops::Deref for Block {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::ops::DerefMut for Block {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({} bytes)", self.len)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.bytes));
        }
    }
}

/// A piece's bytes: blocks of [`BLOCK_BYTES`], the last one shorter.
#[derive(Debug)]
pub struct Piece {
    blocks: Vec<Block>,
    len: usize,
}

impl Piece {
    /// A piece of `len` bytes without blocks yet: [`Piece::next_block`]
    /// adds them as the bytes arrive, so a request still waiting for its
    /// bytes holds no memory.
    pub fn new(len: usize) -> Self {
        Self {
            blocks: Vec::with_capacity(len.div_ceil(BLOCK_BYTES)),
            len,
        }
    }

    /// The next block to fill, taken from `pool`; `None` once the blocks
    /// cover the piece.
    pub fn next_block(&mut self, pool: &BufferPool) -> Option<&mut [u8]> {
        let covered = self.blocks.len() * BLOCK_BYTES;
        if covered >= self.len {
            return None;
        }
        self.blocks
            .push(pool.block((self.len - covered).min(BLOCK_BYTES)));
        self.blocks.last_mut().map(|b| &mut **b)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes `start..start + len`, as the slices of the blocks they
    /// lie in (none if the range is not inside the piece's blocks).
    pub fn slices(&self, start: usize, len: usize) -> impl Iterator<Item = &[u8]> {
        let end = start.saturating_add(len);
        let (start, end) = if end <= self.len {
            (start, end)
        } else {
            (0, 0)
        };
        let first = start / BLOCK_BYTES;
        let last = end.div_ceil(BLOCK_BYTES);
        self.blocks
            .get(first..last.max(first))
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(move |(i, block)| {
                let at = (first + i) * BLOCK_BYTES;
                let from = start.saturating_sub(at);
                let to = (end - at).min(block.len());
                &block[from..to]
            })
            .filter(|s| !s.is_empty())
    }

    /// All of it in one buffer (for tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.slices(0, self.len).flatten().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_given_back_serves_the_next_one() {
        let pool = BufferPool::new(8);
        let mut first = pool.block(BLOCK_BYTES);
        first.fill(7);
        let address = first.as_ptr();
        drop(first);
        assert_eq!(pool.pooled_blocks(), 1);
        // Shorter: the same memory, with the bytes of its last use.
        let second = pool.block(1000);
        assert_eq!(second.as_ptr(), address);
        assert_eq!(second.len(), 1000);
        assert!(second.iter().all(|&b| b == 7));
        assert_eq!(pool.pooled_blocks(), 0);
        // None free: a new one, zeroed.
        let third = pool.block(BLOCK_BYTES);
        assert_ne!(third.as_ptr(), address);
        assert!(third.iter().all(|&b| b == 0));
    }

    #[test]
    fn the_pool_keeps_no_more_free_blocks_than_its_bound() {
        let pool = BufferPool::new(3);
        let held: Vec<Block> = (0..5).map(|_| pool.block(BLOCK_BYTES)).collect();
        drop(held);
        assert_eq!(pool.pooled_blocks(), 3);
        // Longer than a block: never kept.
        let pool = BufferPool::new(3);
        drop(pool.block(BLOCK_BYTES + 1));
        assert_eq!(pool.pooled_blocks(), 0);
    }

    #[test]
    fn a_piece_is_as_many_blocks_as_it_needs_and_reads_back_across_them() {
        let pool = BufferPool::new(16);
        let len = 2 * BLOCK_BYTES + 100;
        let mut piece = Piece::new(len);
        assert_eq!(piece.len(), len);
        let mut next = 0u8;
        let mut sizes = Vec::new();
        while let Some(block) = piece.next_block(&pool) {
            sizes.push(block.len());
            for byte in block {
                *byte = next;
                next = next.wrapping_add(1);
            }
        }
        assert_eq!(sizes, [BLOCK_BYTES, BLOCK_BYTES, 100]);
        let whole: Vec<u8> = (0..len).map(|i| i as u8).collect();
        assert_eq!(piece.to_vec(), whole);
        // A range over a block boundary is two slices, together the bytes.
        let (start, part) = (BLOCK_BYTES - 10, 30);
        let slices: Vec<&[u8]> = piece.slices(start, part).collect();
        assert_eq!(slices.iter().map(|s| s.len()).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(slices.concat(), whole[start..start + part]);
        // The tail, and a range past the end.
        assert_eq!(piece.slices(len - 5, 5).flatten().count(), 5);
        assert_eq!(piece.slices(len - 5, 6).count(), 0);
        drop(piece);
        assert_eq!(pool.pooled_blocks(), 3);
    }

    #[test]
    fn bytes_made_of_a_block_give_it_back_when_the_last_clone_drops() {
        let pool = BufferPool::new(8);
        let mut block = pool.block(BLOCK_BYTES);
        block.fill(1);
        let bytes = block.into_bytes();
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.pooled_blocks(), 0, "a slice still refers to it");
        assert_eq!(&clone[..], &[1; 10]);
        drop(clone);
        assert_eq!(pool.pooled_blocks(), 1);
    }
}
