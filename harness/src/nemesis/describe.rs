//! A nemesis event in a few words, for the report's fault bands and the
//! run's live progress: "halves: n1 n2 | n3 n4 n5", "n3 +20535 ms",
//! "replace n3 by n6 (removed by n1)".

use std::collections::{BTreeMap, BTreeSet};

/// What the event did, in a few words; `""` when its value says nothing.
pub fn detail(f: &str, value: Option<&serde_json::Value>) -> String {
    match fault_kind(f) {
        Some("membership") => membership_detail(f, value),
        _ => fault_detail(value),
    }
}

/// The line the live progress shows: `f` and its detail.
pub fn line(f: &str, value: Option<&serde_json::Value>) -> String {
    let detail = detail(f, value);
    if detail.is_empty() {
        f.to_owned()
    } else {
        format!("{f} {detail}")
    }
}

/// The sides of a partition from its grudge (node -> the nodes it cannot
/// reach): nodes that cannot reach the same set are on one side, and a
/// node that reaches everyone (a bridge) is named apart.
/// `{n1:[n3], n2:[n3], n3:[n1,n2]}` -> "n1 n2 | n3". A grudge that is not
/// clean sides (a ring of majorities) is listed node by node.
fn sides(grudge: &serde_json::Map<String, serde_json::Value>) -> String {
    let cut_of = |cut: &serde_json::Value| -> Vec<String> {
        let mut cut: Vec<String> =
            cut.as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_owned)).collect();
        cut.sort_unstable();
        cut
    };
    let mut by_cut: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    let mut bridges = Vec::new();
    for (node, cut) in grudge {
        let cut = cut_of(cut);
        if cut.is_empty() {
            bridges.push(node.clone());
        } else {
            by_cut.entry(cut).or_default().push(node.clone());
        }
    }
    // Clean sides: each side is cut from exactly every other side.
    let clean = by_cut.iter().all(|(cut, side)| {
        let others: BTreeSet<&String> = by_cut.values().filter(|s| *s != side).flatten().collect();
        cut.iter().collect::<BTreeSet<_>>() == others
    });
    if !clean {
        let each: Vec<String> =
            grudge.iter().map(|(node, cut)| format!("{node} -/- {}", cut_of(cut).join(" "))).collect();
        return each.join("; ");
    }
    let mut groups: Vec<Vec<String>> = by_cut.into_values().collect();
    groups.iter_mut().for_each(|g| g.sort_unstable());
    groups.sort();
    let mut text = groups.iter().map(|g| g.join(" ")).collect::<Vec<_>>().join(" | ");
    if !bridges.is_empty() {
        text.push_str(&format!("; {} reach both", bridges.join(" ")));
    }
    text
}

/// The fault family of a nemesis event's `f`, or `None` for a heal.
pub fn fault_kind(f: &str) -> Option<&'static str> {
    Some(match f {
        "start-partition" => "partition",
        "kill" => "kill",
        "pause" => "pause",
        "bump-clock" | "strobe-clock" => "clock",
        "start-loss" => "loss",
        "start-delay" => "delay",
        "power-loss" => "power-loss",
        "corrupt" => "corrupt",
        "slow-disk" => "slow-disk",
        // A membership change's band runs from the moment it is done (the
        // new node serves, the leaver stopped) to the next heal.
        "join" | "leave" | "replace" => "membership",
        _ => return None,
    })
}

/// "halves: [n1 n2] | [n3 n4 n5]", "n3 +20535 ms": the fault in a few words.
fn fault_detail(value: Option<&serde_json::Value>) -> String {
    let Some(value) = value else { return String::new() };
    let nodes = |v: &serde_json::Value| -> String {
        v.as_array().map(|a| a.iter().filter_map(|n| n.as_str()).collect::<Vec<_>>().join(" ")).unwrap_or_default()
    };
    if let Some(shape) = value.get("shape").and_then(|s| s.as_str()) {
        let Some(grudge) = value.get("grudge").and_then(|g| g.as_object()) else { return shape.to_owned() };
        return format!("{shape}: {}", sides(grudge));
    }
    let mut parts = Vec::new();
    if let Some(node) = value.get("node").and_then(|n| n.as_str()) {
        parts.push(node.to_owned());
    }
    if let Some(list) = value.get("nodes") {
        parts.push(nodes(list));
    }
    if let Some(offset) = value.get("offset_ms").and_then(|o| o.as_i64()) {
        parts.push(format!("{offset:+} ms"));
    }
    if let Some(p) = value.get("probability").and_then(|p| p.as_f64()) {
        parts.push(format!("{:.0}% loss", p * 100.0));
    }
    if let Some(d) = value.get("delay_ms").and_then(|d| d.as_u64()) {
        parts.push(format!("+{d} ms"));
    }
    parts.join(", ")
}

/// "join n4", "leave n2", "replace n3 by n6 (removed by n1)".
fn membership_detail(f: &str, value: Option<&serde_json::Value>) -> String {
    let field = |name: &str| value.and_then(|v| v.get(name)).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
    match f {
        "replace" => format!("replace {} by {} (removed by {})", field("node"), field("added"), field("by")),
        _ => format!("{f} {}", field("node")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_partition_is_named_by_its_sides() {
        let halves = json!({"shape": "halves", "grudge": {"n1": ["n3", "n4"], "n2": ["n3", "n4"], "n3": ["n1", "n2"], "n4": ["n1", "n2"]}});
        assert_eq!(line("start-partition", Some(&halves)), "start-partition halves: n1 n2 | n3 n4");
        // The bridge n3 is cut from nobody: named apart.
        let bridge = json!({"shape": "bridge", "grudge": {"n1": ["n4", "n5"], "n2": ["n4", "n5"], "n3": [], "n4": ["n1", "n2"], "n5": ["n1", "n2"]}});
        assert_eq!(detail("start-partition", Some(&bridge)), "bridge: n1 n2 | n4 n5; n3 reach both");
        let ring =
            json!({"shape": "majorities-ring", "grudge": {"n1": ["n3"], "n2": ["n4"], "n3": ["n1"], "n4": ["n2"]}});
        assert_eq!(
            detail("start-partition", Some(&ring)),
            "majorities-ring: n1 -/- n3; n2 -/- n4; n3 -/- n1; n4 -/- n2"
        );
        assert_eq!(detail("pause", Some(&json!({"nodes": ["n2"]}))), "n2");
        assert_eq!(line("heal", None), "heal");
        let replace = json!({"node": "n3", "added": "n6", "by": "n1"});
        assert_eq!(detail("replace", Some(&replace)), "replace n3 by n6 (removed by n1)");
    }
}
