//! The search's bookkeeping: the set of placed operations, and the call
//! and return entries of the unplaced ones as linked lists in time order.

use crate::model::Operation;

/// A set of operation positions.
#[derive(Clone, Debug)]
pub(super) struct Bits(pub(super) Vec<u64>);

impl Bits {
    /// `n` clear bits, in `words`' memory.
    pub(super) fn reuse(mut words: Vec<u64>, n: usize) -> Bits {
        words.clear();
        words.resize(n.div_ceil(64), 0);
        Bits(words)
    }
    pub(super) fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub(super) fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Doubly linked lists over numbered nodes, each a ring through its head
/// node, that nodes are lifted out of and put back into (in the reverse
/// order, as the search backtracks).
pub(super) struct Links {
    /// Each node's next and previous node.
    links: Vec<[usize; 2]>,
}

impl Links {
    /// `nodes` nodes, each a ring of its own (an empty list if it is a
    /// head), in `links`' memory.
    fn reuse(mut links: Vec<[usize; 2]>, nodes: usize) -> Links {
        links.clear();
        links.extend((0..nodes).map(|node| [node, node]));
        Links { links }
    }

    pub(super) fn next(&self, node: usize) -> usize {
        self.links[node][0]
    }

    /// Appends `node` to the list whose head is `head`.
    fn push_back(&mut self, head: usize, node: usize) {
        let last = self.links[head][1];
        self.links[node] = [head, last];
        self.links[last][0] = node;
        self.links[head][1] = node;
    }

    fn unlink(&mut self, node: usize) {
        let [next, prev] = self.links[node];
        self.links[prev][0] = next;
        self.links[next][1] = prev;
    }

    fn relink(&mut self, node: usize) {
        let [next, prev] = self.links[node];
        self.links[prev][0] = node;
        self.links[next][1] = node;
    }
}

/// The call and return entries of the unplaced operations, in time order,
/// as a linked list: entry `op` is the call of operation `op`, entry `n +
/// op` its return, entry `2n` the head. Beside it, the calls alone, in two
/// lists, read-only operations (head `n`) and the others (head `n + 1`):
/// looking ahead for reads and the writes before them walks only those.
pub(super) struct Entries {
    pub(super) all: Links,
    pub(super) calls: Links,
    /// Each entry's place in time order: the lists never reorder, so a call
    /// precedes a return in the list exactly when its rank is lower.
    pub(super) rank: Vec<usize>,
    pub(super) n: usize,
    pub(super) head: usize,
    /// The sort's buffer, kept for the next key's.
    order: Vec<u128>,
}

/// The memory of an [`Entries`], handed from one key's search to the
/// next: a history of many small keys would otherwise spend more time
/// allocating than searching.
#[derive(Default)]
pub(super) struct EntryBuffers {
    order: Vec<u128>,
    all: Vec<[usize; 2]>,
    calls: Vec<[usize; 2]>,
    rank: Vec<usize>,
}

impl Entries {
    /// The entries of `ops`; `read_only(i)` says which list operation `i`'s
    /// call goes in.
    pub(super) fn new<O>(ops: &[Operation<O>], read_only: impl Fn(usize) -> bool, buffers: EntryBuffers) -> Entries {
        let n = ops.len();
        // (time, then calls before returns at equal times: the more
        // permissive reading, then the entry), packed in one integer so the
        // sort compares plain numbers.
        let mut order = buffers.order;
        order.clear();
        for (i, op) in ops.iter().enumerate() {
            order.push(u128::from(op.invoke_ns) << 64 | i as u128);
            order.push(u128::from(op.return_ns.unwrap_or(u64::MAX)) << 64 | 1 << 63 | (n + i) as u128);
        }
        order.sort_unstable();
        let head = 2 * n;
        let mut all = Links::reuse(buffers.all, 2 * n + 1);
        let mut calls = Links::reuse(buffers.calls, n + 2);
        let mut rank = buffers.rank;
        rank.clear();
        rank.resize(2 * n + 1, 0);
        for (place, &key) in order.iter().enumerate() {
            let entry = (key as u64 & !(1 << 63)) as usize;
            rank[entry] = place;
            all.push_back(head, entry);
            if entry < n {
                calls.push_back(if read_only(entry) { n } else { n + 1 }, entry);
            }
        }
        Entries { all, calls, rank, n, head, order }
    }

    /// Hands the memory on to the next key's entries.
    pub(super) fn recycle(self) -> EntryBuffers {
        let Entries { all, calls, rank, order, .. } = self;
        EntryBuffers { order, all: all.links, calls: calls.links, rank }
    }

    pub(super) fn call_at(&self, op: usize) -> usize {
        op
    }

    pub(super) fn return_at(&self, op: usize) -> usize {
        self.n + op
    }

    /// The first unplaced read-only call, or the reads' head (`n`).
    pub(super) fn first_read(&self) -> usize {
        self.calls.next(self.n)
    }

    pub(super) fn lift(&mut self, op: usize) {
        self.all.unlink(self.call_at(op));
        self.all.unlink(self.return_at(op));
        self.calls.unlink(op);
    }

    pub(super) fn unlift(&mut self, op: usize) {
        self.calls.relink(op);
        self.all.relink(self.return_at(op));
        self.all.relink(self.call_at(op));
    }
}
