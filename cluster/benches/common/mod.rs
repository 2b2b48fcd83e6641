//! What the benches share: reading their settings, and the machine's CPU.
//! Each bench includes this file with `#[path]` and uses part of it.

#![allow(dead_code)]

pub mod load;

/// The environment variable `name` as a number, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The whole machine's CPU over an interval, from `/proc/stat` (Linux). Busy
/// CPU time per operation is steadier than ops/s on a shared 2-core VM, so
/// it is the number to compare when trying a change.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    pub busy_ticks: u64,
    pub idle_ticks: u64,
    pub steal_ticks: u64,
}

impl CpuUse {
    pub fn now() -> CpuUse {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal
        CpuUse {
            busy_ticks: field(0) + field(1) + field(2) + field(5) + field(6),
            idle_ticks: field(3) + field(4),
            steal_ticks: field(7),
        }
    }

    pub fn since(self, earlier: CpuUse) -> CpuUse {
        CpuUse {
            busy_ticks: self.busy_ticks - earlier.busy_ticks,
            idle_ticks: self.idle_ticks - earlier.idle_ticks,
            steal_ticks: self.steal_ticks - earlier.steal_ticks,
        }
    }

    pub fn plus(self, other: CpuUse) -> CpuUse {
        CpuUse {
            busy_ticks: self.busy_ticks + other.busy_ticks,
            idle_ticks: self.idle_ticks + other.idle_ticks,
            steal_ticks: self.steal_ticks + other.steal_ticks,
        }
    }

    pub fn percent(ticks: u64, total: u64) -> f64 {
        100.0 * ticks as f64 / total.max(1) as f64
    }
}
