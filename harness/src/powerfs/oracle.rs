//! A brute-force reference for `Model`, and the property test that runs
//! random operation sequences through both and compares them.
//!
//! The reference keeps each file's current and durable content as whole
//! `Vec<u8>`s (copied in full at each fsync) and each directory's current
//! and durable entries as maps; it never frees anything before a power
//! loss and addresses everything by path. So it checks the page sharing,
//! dirty tracking and memory accounting of `pages.rs`, and the reference
//! counting of `model.rs`, against the plain statement of the semantics.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::{FsError, FsResult, Ino, Kind, Limits, Model, NewInode, ROOT_INO};
use super::pages::PAGE_BYTES;

type Path = Vec<OsString>;

#[derive(Debug)]
enum RefNode {
    File { current: Vec<u8>, durable: Vec<u8> },
    Dir { current: BTreeMap<OsString, u64>, durable: BTreeMap<OsString, u64> },
}

/// The reference filesystem; node 0 is the root.
#[derive(Debug)]
struct Reference {
    nodes: HashMap<u64, RefNode>,
    next_id: u64,
}

impl Reference {
    fn new() -> Reference {
        let root = RefNode::Dir { current: BTreeMap::new(), durable: BTreeMap::new() };
        Reference { nodes: HashMap::from([(0, root)]), next_id: 1 }
    }

    fn resolve(&self, path: &[OsString]) -> FsResult<u64> {
        let mut id = 0;
        for name in path {
            id = *self.entries(id)?.get(name).ok_or(FsError::NotFound)?;
        }
        Ok(id)
    }

    fn entries(&self, id: u64) -> FsResult<&BTreeMap<OsString, u64>> {
        match &self.nodes[&id] {
            RefNode::Dir { current, .. } => Ok(current),
            RefNode::File { .. } => Err(FsError::NotDir),
        }
    }

    fn entries_mut(&mut self, id: u64) -> &mut BTreeMap<OsString, u64> {
        match self.nodes.get_mut(&id) {
            Some(RefNode::Dir { current, .. }) => current,
            _ => panic!("node {id} is not a directory"),
        }
    }

    fn content_mut(&mut self, path: &[OsString]) -> FsResult<&mut Vec<u8>> {
        let id = self.resolve(path)?;
        match self.nodes.get_mut(&id) {
            Some(RefNode::File { current, .. }) => Ok(current),
            _ => Err(FsError::IsDir),
        }
    }

    fn is_dir(&self, id: u64) -> bool {
        matches!(self.nodes[&id], RefNode::Dir { .. })
    }

    fn split(path: &[OsString]) -> (&[OsString], &OsStr) {
        let (name, dir) = path.split_last().expect("an operation on the root");
        (dir, name)
    }

    fn apply(&mut self, op: &Op) -> FsResult<Option<Vec<u8>>> {
        match op {
            Op::Write { path, offset, data } => {
                let content = self.content_mut(path)?;
                let end = *offset as usize + data.len();
                if !data.is_empty() {
                    content.resize(content.len().max(end), 0);
                    content[*offset as usize..end].copy_from_slice(data);
                }
            }
            Op::Truncate { path, size_bytes } => self.content_mut(path)?.resize(*size_bytes as usize, 0),
            Op::Allocate { path, offset, len } => {
                let content = self.content_mut(path)?;
                if *len == 0 {
                    return Err(FsError::InvalidArgument);
                }
                let end = (offset + len) as usize;
                content.resize(content.len().max(end), 0);
            }
            Op::Read { path, offset, len } => {
                let content = self.content_mut(path)?;
                let start = (*offset as usize).min(content.len());
                let end = (*offset + *len).min(content.len() as u64) as usize;
                return Ok(Some(content[start..end.max(start)].to_vec()));
            }
            Op::Sync { path } => self.sync(path)?,
            Op::Create { dir, name, kind } => self.create(dir, name, *kind)?,
            Op::Unlink { path } => self.remove(path, Kind::File)?,
            Op::Rmdir { path } => self.remove(path, Kind::Dir)?,
            Op::Rename { from, to_dir, to_name, no_replace } => self.rename(from, to_dir, to_name, *no_replace)?,
            Op::Link { from, to_dir, to_name } => self.link(from, to_dir, to_name)?,
            Op::PowerLoss => self.power_loss(),
        }
        Ok(None)
    }

    fn sync(&mut self, path: &[OsString]) -> FsResult<()> {
        let id = self.resolve(path)?;
        match self.nodes.get_mut(&id) {
            Some(RefNode::File { current, durable }) => *durable = current.clone(),
            Some(RefNode::Dir { current, durable }) => *durable = current.clone(),
            None => unreachable!("resolved to a missing node"),
        }
        Ok(())
    }

    fn create(&mut self, dir: &[OsString], name: &OsStr, kind: Kind) -> FsResult<()> {
        let dir_id = self.resolve(dir)?;
        if self.entries(dir_id)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        let node = match kind {
            Kind::File => RefNode::File { current: Vec::new(), durable: Vec::new() },
            Kind::Dir => RefNode::Dir { current: BTreeMap::new(), durable: BTreeMap::new() },
        };
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(id, node);
        self.entries_mut(dir_id).insert(name.to_os_string(), id);
        Ok(())
    }

    fn remove(&mut self, path: &[OsString], kind: Kind) -> FsResult<()> {
        let id = self.resolve(path)?;
        match (kind, self.is_dir(id)) {
            (Kind::File, true) => return Err(FsError::IsDir),
            (Kind::Dir, false) => return Err(FsError::NotDir),
            (Kind::Dir, true) if !self.entries(id)?.is_empty() => return Err(FsError::NotEmpty),
            _ => {}
        }
        let (dir, name) = Self::split(path);
        let dir_id = self.resolve(dir)?;
        self.entries_mut(dir_id).remove(name);
        Ok(())
    }

    fn rename(&mut self, from: &[OsString], to_dir: &[OsString], to_name: &OsStr, no_replace: bool) -> FsResult<()> {
        let id = self.resolve(from)?;
        let to_dir_id = self.resolve(to_dir)?;
        let replaced = self.entries(to_dir_id)?.get(to_name).copied();
        if replaced.is_some() && no_replace {
            return Err(FsError::Exists);
        }
        if replaced == Some(id) {
            return Ok(());
        }
        if let Some(replaced) = replaced {
            match (self.is_dir(id), self.is_dir(replaced)) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !self.entries(replaced)?.is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        if self.is_dir(id) && to_dir.starts_with(from) {
            return Err(FsError::InvalidArgument);
        }
        let (from_dir, from_name) = Self::split(from);
        let from_dir_id = self.resolve(from_dir)?;
        self.entries_mut(from_dir_id).remove(from_name);
        self.entries_mut(to_dir_id).insert(to_name.to_os_string(), id);
        Ok(())
    }

    fn link(&mut self, from: &[OsString], to_dir: &[OsString], to_name: &OsStr) -> FsResult<()> {
        let id = self.resolve(from)?;
        if self.is_dir(id) {
            return Err(FsError::NotPermitted);
        }
        let to_dir_id = self.resolve(to_dir)?;
        if self.entries(to_dir_id)?.contains_key(to_name) {
            return Err(FsError::Exists);
        }
        self.entries_mut(to_dir_id).insert(to_name.to_os_string(), id);
        Ok(())
    }

    /// Keeps what the root reaches through durable entries, breadth first
    /// by name, each directory once; everything reverts to durable.
    fn power_loss(&mut self) {
        let mut reached: HashMap<u64, Option<BTreeMap<OsString, u64>>> = HashMap::from([(0, None)]);
        let mut queue = VecDeque::from([0]);
        while let Some(id) = queue.pop_front() {
            let RefNode::Dir { durable, .. } = &self.nodes[&id] else { unreachable!("queued a file") };
            let mut kept = BTreeMap::new();
            for (name, &child) in durable {
                if self.is_dir(child) {
                    if reached.contains_key(&child) {
                        continue;
                    }
                    queue.push_back(child);
                }
                reached.insert(child, None);
                kept.insert(name.clone(), child);
            }
            reached.insert(id, Some(kept));
        }
        self.nodes.retain(|id, _| reached.contains_key(id));
        for (id, node) in &mut self.nodes {
            match node {
                RefNode::File { current, durable } => *current = durable.clone(),
                RefNode::Dir { current, durable } => {
                    let kept = reached[id].clone().expect("a reached directory was listed");
                    *current = kept.clone();
                    *durable = kept;
                }
            }
        }
    }

    /// Every path of the current tree with its kind, root excluded.
    fn paths(&self) -> Vec<(Path, Kind)> {
        let mut out = Vec::new();
        let mut stack = vec![(Vec::new(), 0)];
        while let Some((path, id)) = stack.pop() {
            let Ok(entries) = self.entries(id) else { continue };
            for (name, &child) in entries {
                let mut child_path = path.clone();
                child_path.push(name.clone());
                let kind = if self.is_dir(child) { Kind::Dir } else { Kind::File };
                out.push((child_path.clone(), kind));
                stack.push((child_path, child));
            }
        }
        out
    }

    /// The tree as path → (kind, content, the first path of the same node).
    fn snapshot(&self) -> Snapshot {
        let mut first_path: HashMap<u64, Path> = HashMap::new();
        let mut out = Snapshot::new();
        for (path, _) in self.paths() {
            let id = self.resolve(&path).expect("listed path resolves");
            let content = match &self.nodes[&id] {
                RefNode::File { current, .. } => Some(current.clone()),
                RefNode::Dir { .. } => None,
            };
            let first = first_path.entry(id).or_insert_with(|| path.clone()).clone();
            out.insert(path, (content, first));
        }
        out
    }
}

/// Path → (file content or None for a directory, first path of the inode
/// in listing order): equal snapshots mean equal trees, hard links included.
type Snapshot = BTreeMap<Path, (Option<Vec<u8>>, Path)>;

#[derive(Clone, Debug)]
enum Op {
    Write { path: Path, offset: u64, data: Vec<u8> },
    Truncate { path: Path, size_bytes: u64 },
    Allocate { path: Path, offset: u64, len: u64 },
    Read { path: Path, offset: u64, len: u64 },
    Sync { path: Path },
    Create { dir: Path, name: OsString, kind: Kind },
    Unlink { path: Path },
    Rmdir { path: Path },
    Rename { from: Path, to_dir: Path, to_name: OsString, no_replace: bool },
    Link { from: Path, to_dir: Path, to_name: OsString },
    PowerLoss,
}

fn model_resolve(model: &Model, path: &[OsString]) -> FsResult<Ino> {
    let mut ino = ROOT_INO;
    for name in path {
        ino = model.lookup(ino, name)?.ino;
    }
    Ok(ino)
}

fn model_parent(model: &Model, path: &[OsString]) -> FsResult<(Ino, OsString)> {
    let (dir, name) = Reference::split(path);
    Ok((model_resolve(model, dir)?, name.to_os_string()))
}

const OWNER: NewInode = NewInode { perm: 0o644, uid: 0, gid: 0 };

fn model_apply(model: &mut Model, op: &Op) -> FsResult<Option<Vec<u8>>> {
    match op {
        Op::Write { path, offset, data } => model.write(model_resolve(model, path)?, *offset, data).map(|_| None),
        Op::Truncate { path, size_bytes } => model.set_size(model_resolve(model, path)?, *size_bytes).map(|_| None),
        Op::Allocate { path, offset, len } => model.allocate(model_resolve(model, path)?, *offset, *len).map(|_| None),
        Op::Read { path, offset, len } => model.read(model_resolve(model, path)?, *offset, *len).map(Some),
        Op::Sync { path } => model.sync(model_resolve(model, path)?).map(|_| None),
        Op::Create { dir, name, kind } => model.create(model_resolve(model, dir)?, name, *kind, OWNER).map(|_| None),
        Op::Unlink { path } => {
            let (dir, name) = model_parent(model, path)?;
            model.unlink(dir, &name).map(|_| None)
        }
        Op::Rmdir { path } => {
            let (dir, name) = model_parent(model, path)?;
            model.rmdir(dir, &name).map(|_| None)
        }
        Op::Rename { from, to_dir, to_name, no_replace } => {
            let (dir, name) = model_parent(model, from)?;
            let to_dir = model_resolve(model, to_dir)?;
            model.rename(dir, &name, to_dir, to_name, *no_replace).map(|_| None)
        }
        Op::Link { from, to_dir, to_name } => {
            let ino = model_resolve(model, from)?;
            model.link(ino, model_resolve(model, to_dir)?, to_name).map(|_| None)
        }
        Op::PowerLoss => model.power_loss().map(|_| None),
    }
}

fn model_snapshot(model: &Model) -> Snapshot {
    let mut first_path: HashMap<Ino, Path> = HashMap::new();
    let mut out = Snapshot::new();
    let mut stack = vec![(Path::new(), ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        let (_, entries) = model.read_dir(ino).expect("a listed directory");
        for entry in entries {
            let mut child_path = path.clone();
            child_path.push(entry.name);
            let content = match entry.kind {
                Kind::File => Some(model.read(entry.ino, 0, u64::MAX).expect("a listed file")),
                Kind::Dir => {
                    stack.push((child_path.clone(), entry.ino));
                    None
                }
            };
            let first = first_path.entry(entry.ino).or_insert_with(|| child_path.clone()).clone();
            out.insert(child_path, (content, first));
        }
    }
    out
}

/// The first path where the model's tree differs from the reference's.
fn first_difference(model: &Snapshot, reference: &Snapshot) -> Option<String> {
    let paths = model.keys().chain(reference.keys());
    for path in paths {
        let (got, want) = (model.get(path), reference.get(path));
        if got == want {
            continue;
        }
        let describe = match (got, want) {
            (Some((Some(a), _)), Some((Some(b), _))) if a != b => {
                let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
                format!("content: model {} bytes, reference {}, first difference at byte {at}", a.len(), b.len())
            }
            _ => format!("model: {}, reference: {}", summary(got), summary(want)),
        };
        return Some(format!("{path:?}: {describe}"));
    }
    None
}

fn summary(entry: Option<&(Option<Vec<u8>>, Path)>) -> String {
    match entry {
        None => "absent".to_owned(),
        Some((None, first)) => format!("directory first listed as {first:?}"),
        Some((Some(content), first)) => format!("file of {} bytes first listed as {first:?}", content.len()),
    }
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// `len` bytes of a pattern that differs from write to write and has no
/// zeros (a stale byte that should read as zero shows). Cheap: per-byte
/// RNG calls would dominate the test in a debug build.
fn pattern(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let start: u8 = rng.random();
    // 251 is prime: the pattern does not repeat at page boundaries.
    let period: Vec<u8> = (0..251u8).map(|i| start.wrapping_add(i).max(1)).collect();
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        let n = (len - data.len()).min(period.len());
        data.extend_from_slice(&period[..n]);
    }
    data
}

fn random_op(rng: &mut StdRng, reference: &Reference) -> Op {
    let paths = reference.paths();
    let files: Vec<&Path> = paths.iter().filter(|(_, k)| *k == Kind::File).map(|(p, _)| p).collect();
    let mut dirs: Vec<Path> = vec![Path::new()];
    dirs.extend(paths.iter().filter(|(_, k)| *k == Kind::Dir).map(|(p, _)| p.clone()));
    let pick_dir = |rng: &mut StdRng| dirs[rng.random_range(0..dirs.len())].clone();
    let name = |rng: &mut StdRng| OsString::from(NAMES[rng.random_range(0..NAMES.len())]);
    let page = PAGE_BYTES;
    let roll = rng.random_range(0..100);
    if files.is_empty() || roll < 12 {
        let kind = if rng.random_bool(0.7) { Kind::File } else { Kind::Dir };
        return Op::Create { dir: pick_dir(rng), name: name(rng), kind };
    }
    let file = files[rng.random_range(0..files.len())].clone();
    let any = paths[rng.random_range(0..paths.len())].0.clone();
    match roll {
        12..40 => {
            let offset = rng.random_range(0..6 * page);
            let len = rng.random_range(0..3 * page) as usize;
            Op::Write { path: file, offset, data: pattern(rng, len) }
        }
        40..48 => Op::Truncate { path: file, size_bytes: rng.random_range(0..7 * page) },
        48..50 => Op::Allocate { path: file, offset: rng.random_range(0..6 * page), len: rng.random_range(0..page) },
        50..58 => Op::Read { path: file, offset: rng.random_range(0..7 * page), len: rng.random_range(0..4 * page) },
        58..68 => Op::Sync { path: file },
        68..76 => Op::Sync { path: pick_dir(rng) },
        76..80 => Op::Unlink { path: any },
        80..83 => Op::Rmdir { path: any },
        83..91 => Op::Rename { from: any, to_dir: pick_dir(rng), to_name: name(rng), no_replace: rng.random_bool(0.2) },
        91..94 => Op::Link { from: any, to_dir: pick_dir(rng), to_name: name(rng) },
        _ => Op::PowerLoss,
    }
}

fn run_sequence(seed: u64, ops: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::new(Limits::default(), OWNER);
    let mut reference = Reference::new();
    for step in 0..ops {
        let op = random_op(&mut rng, &reference);
        let expected = reference.apply(&op);
        let got = model_apply(&mut model, &op);
        assert_eq!(got, expected, "step {step}: {op:?}");
        model.check_invariants();
        if matches!(op, Op::PowerLoss) || step % 16 == 0 || step + 1 == ops {
            if let Some(difference) = first_difference(&model_snapshot(&model), &reference.snapshot()) {
                panic!("tree after step {step} ({op:?}) differs from the reference: {difference}");
            }
        }
    }
}

#[test]
fn model_matches_brute_force_reference() {
    let base: u64 = std::env::var("POWERFS_ORACLE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let sequences: u64 = std::env::var("POWERFS_ORACLE_SEQUENCES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    for seed in base..base + sequences {
        let result = catch_unwind(AssertUnwindSafe(|| run_sequence(seed, 200)));
        if let Err(panic) = result {
            eprintln!(
                "oracle failed with seed {seed}; rerun with POWERFS_ORACLE_SEED={seed} POWERFS_ORACLE_SEQUENCES=1"
            );
            std::panic::resume_unwind(panic);
        }
    }
}
