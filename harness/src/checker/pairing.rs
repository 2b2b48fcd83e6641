//! Invocations paired with their completions: the one pairing every
//! checker reads a history through.

use super::cache::FastMap;
use crate::history::{Event, EventType, Process};

/// Invocations not completed yet, by process: a vector indexed by client
/// id for the small ids histories use (a map lookup per event cost more
/// than the rest of pairing), a map for the others.
#[derive(Default)]
struct Open<'e> {
    small: Vec<Option<&'e Event>>,
    other: FastMap<Process, &'e Event>,
}

impl<'e> Open<'e> {
    const SMALL_IDS: u64 = 1 << 16;

    fn insert(&mut self, invoke: &'e Event) {
        match invoke.process {
            Process::Client(id) if id < Self::SMALL_IDS => {
                let id = id as usize;
                if self.small.len() <= id {
                    self.small.resize(id + 1, None);
                }
                self.small[id] = Some(invoke);
            }
            process => {
                self.other.insert(process, invoke);
            }
        }
    }

    fn remove(&mut self, process: Process) -> Option<&'e Event> {
        match process {
            Process::Client(id) if id < Self::SMALL_IDS => self.small.get_mut(id as usize)?.take(),
            process => self.other.remove(&process),
        }
    }

    fn into_values(self) -> impl Iterator<Item = &'e Event> {
        self.small.into_iter().flatten().chain(self.other.into_values())
    }
}

/// Calls `each` with every client invocation and its completion: the
/// completed ones in completion order, then the ones never completed
/// (`None`) in invocation order. A completion with no open invocation is
/// ignored; the first error `each` returns stops the walk.
pub fn for_each_pair<'e, E>(
    events: &'e [Event],
    mut each: impl FnMut(&'e Event, Option<&'e Event>) -> Result<(), E>,
) -> Result<(), E> {
    let mut open = Open::default();
    for event in events.iter().filter(|e| matches!(e.process, Process::Client(_))) {
        if event.kind == EventType::Invoke {
            open.insert(event);
            continue;
        }
        let Some(invoke) = open.remove(event.process) else { continue };
        each(invoke, Some(event))?;
    }
    let mut unfinished: Vec<&Event> = open.into_values().collect();
    unfinished.sort_by_key(|e| e.index);
    unfinished.into_iter().try_for_each(|invoke| each(invoke, None))
}
