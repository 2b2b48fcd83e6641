//! The sections of a run's page, top to bottom: verdicts, what ran,
//! faults, latency, throughput, availability, staleness, anomalies, files.

use super::anomaly::{anomalies, Anomaly};
use super::data::{self, FaultWindow, Outcome, Sample};
use super::html::{badge, esc, figure, ms, page, table, url_path, verdict_word};
use super::plot::{self, Bar, Role};
use super::{Page, ReportError, Run, MAX_SCATTER_POINTS, MAX_TABLE_ROWS, MAX_TIMELINES};
use crate::verdict::Validity;
use std::fmt::Write;

/// Operations on one anomaly's timeline: the involved ones, then the
/// nearest others on the key.
const MAX_TIMELINE_BARS: usize = 30;

/// What every section needs, computed once.
struct Context<'a> {
    run: &'a Run,
    samples: &'a [Sample],
    faults: Vec<FaultWindow>,
    marks: Vec<(f64, String)>,
    end_s: f64,
    plots: Vec<(String, String)>,
}

pub fn build(run: &Run) -> Result<Page, ReportError> {
    let end_s = run.history.end_ns as f64 / 1e9;
    let mut cx = Context {
        run,
        samples: &run.history.samples,
        faults: data::fault_windows(&run.history.nemesis, end_s),
        marks: data::nemesis_marks(&run.history.nemesis),
        end_s,
        plots: Vec::new(),
    };
    let scenario = run.config["scenario"]["name"].as_str().unwrap_or(&run.name).to_owned();
    let mut body = header(&cx, &scenario);
    body += &verdicts(run);
    body += &setup(&cx);
    body += &faults(&cx);
    body += &latency(&mut cx)?;
    body += &throughput(&mut cx)?;
    body += &availability(&cx);
    body += &staleness(&mut cx)?;
    body += &anomaly_section(&mut cx)?;
    body += &files(run);
    let title = format!("{} {scenario} · {}", verdict_word(run.validity()), run.name);
    Ok(Page { html: page(&title, &body), plots: cx.plots })
}

fn header(cx: &Context, scenario: &str) -> String {
    let validity = cx.run.validity();
    let failing: Vec<&str> =
        cx.run.results.iter().filter(|r| r.valid == Validity::Invalid).map(|r| r.checker.as_str()).collect();
    let lede = match validity {
        Validity::Valid => "Every check passed.".to_owned(),
        Validity::Invalid => format!("Anomalies found by: {}.", failing.join(", ")),
        Validity::Unknown => "No anomaly found, but some checks could not decide (see below).".to_owned(),
    };
    let big = badge(validity).replace("class=\"badge", "class=\"big badge");
    format!(
        "<header><p class=\"note\"><a href=\"../index.html\">all runs</a> · run {}</p>\
         <h1>{big} {}</h1><p>{}</p><nav><a href=\"#checks\">checks</a><a href=\"#run\">run</a>\
         <a href=\"#faults\">faults</a><a href=\"#latency\">latency</a><a href=\"#throughput\">throughput</a>\
         <a href=\"#availability\">availability</a><a href=\"#staleness\">staleness</a>\
         <a href=\"#anomalies\">anomalies</a><a href=\"#files\">files</a></nav></header>\n",
        esc(&cx.run.name),
        esc(scenario),
        esc(&lede)
    )
}

fn verdicts(run: &Run) -> String {
    let rows: Vec<Vec<String>> =
        run.results.iter().map(|r| vec![esc(&r.checker), badge(r.valid), esc(&r.reason)]).collect();
    format!("<h2 id=\"checks\">Checks</h2>{}", table(&["checker", "verdict", "why"], &rows))
}

fn setup(cx: &Context) -> String {
    let scenario = &cx.run.config["scenario"];
    let summary = &cx.run.summary;
    let field = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => esc(s),
        serde_json::Value::Null => "–".into(),
        serde_json::Value::Array(items) if items.is_empty() => "none".into(),
        serde_json::Value::Array(items) => {
            esc(&items.iter().map(|i| i.as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>().join(", "))
        }
        other => esc(&other.to_string()),
    };
    let started = summary["start_unix_ms"].as_u64().map_or("–".into(), crate::utc::text_from_unix_ms);
    let facts = [
        ("workload", field(&scenario["workload"])),
        ("nemesis", field(&scenario["nemesis"])),
        ("cluster", format!("{} nodes ({} backend)", field(&scenario["nodes"]), field(&scenario["backend"]))),
        (
            "clients",
            format!("{} processes, {} ops/s in all", field(&scenario["concurrency"]), field(&scenario["rate"])),
        ),
        ("seed", field(&cx.run.config["seed"])),
        ("started", esc(&started)),
        ("traffic", format!("{:.1} s (history)", cx.end_s)),
        ("convergence wait", ms(summary["convergence_wait_ms"].as_f64())),
        ("events", format!("{} over {} keys", field(&summary["events"]), field(&summary["keys"]))),
    ];
    let mut html = String::from("<h2 id=\"run\">What ran</h2><dl class=\"facts\">");
    for (name, value) in facts {
        let _ = write!(html, "<dt>{name}</dt><dd>{value}</dd>");
    }
    let command = cx.run.config["command"].as_str().unwrap_or("(not recorded)");
    let _ = write!(html, "</dl><p>Reproduce this run (same seed, same schedule):</p><pre>{}</pre>", esc(command));
    let rows: Vec<Vec<String>> = data::counts(cx.samples)
        .into_iter()
        .map(|(kind, c)| {
            let total: usize = c.iter().sum();
            let mut row = vec![esc(&kind)];
            row.extend(c.iter().chain([&total]).map(|n| format!("<span class=\"num\">{n}</span>")));
            row
        })
        .collect();
    html += "<h3>Operations by type and outcome</h3>";
    html += &table(&["operation", "ok", "fail", "info (unknown)", "total"], &rows);
    html
}

fn faults(cx: &Context) -> String {
    let mut html = String::from("<h2 id=\"faults\">Faults</h2>");
    if cx.faults.is_empty() {
        return html + "<p>No fault was injected in this run.</p>";
    }
    let rows: Vec<Vec<String>> = cx
        .faults
        .iter()
        .take(MAX_TABLE_ROWS)
        .map(|f| {
            let colour = plot::fault_colour(&f.kind);
            vec![
                format!("<span style=\"color: rgb({},{},{})\">■</span> {}", colour.0, colour.1, colour.2, esc(&f.kind)),
                esc(&f.detail),
                format!("{:.1} s", f.start_s),
                format!("{:.1} s", f.end_s),
                format!("{:.1} s", f.end_s - f.start_s),
            ]
        })
        .collect();
    html += "<p>Each fault lasts from its injection to the next heal; the plots below shade these windows.</p>";
    html += &table(&["fault", "what", "from", "to", "lasted"], &rows);
    if cx.faults.len() > MAX_TABLE_ROWS {
        let _ = write!(
            html,
            "<p class=\"note\">{} more faults: see the nemesis events in <a href=\"history.jsonl\">history.jsonl</a>.</p>",
            cx.faults.len() - MAX_TABLE_ROWS
        );
    }
    html
}

/// A file name part from history text: lowercase letters, digits, dashes.
fn slug(text: &str) -> String {
    let slug: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    // Distinct texts must not share a file: add a short hash of the text.
    let hash = crate::hash::fnv1a(text.as_bytes());
    format!("{slug}-{:04x}", hash & 0xffff)
}

fn kinds(samples: &[Sample]) -> Vec<String> {
    let kinds: std::collections::BTreeSet<&str> = samples.iter().map(|s| &*s.kind).collect();
    kinds.into_iter().map(str::to_owned).collect()
}

fn latency(cx: &mut Context) -> Result<String, ReportError> {
    let sampled = data::downsample(cx.samples, MAX_SCATTER_POINTS);
    let svg = plot::latency_scatter(&sampled.shown, &cx.faults, cx.end_s)?;
    let note = if sampled.is_complete() {
        format!("All {} operations are drawn.", cx.samples.len())
    } else {
        let part = |(outcome, (n, stride)): (&str, (usize, usize))| match stride {
            1 => format!("all {n} {outcome}"),
            _ => format!("every {stride}th of {n} {outcome}"),
        };
        let parts: Vec<String> = ["ok", "failed", "unknown"].into_iter().zip(sampled.strides).map(part).collect();
        format!(
            "Downsampled to {} of {} operations, evenly over the run: {}.",
            sampled.shown.len(),
            cx.samples.len(),
            parts.join(", ")
        )
    };
    let caption = format!(
        "Latency of each operation at its invocation time (log scale): colour by operation, dot = ok, \
         cross = failed, triangle = unknown outcome (at the time it was given up on; operations that never \
         completed sit on the top edge). Shaded: faults. {note}"
    );
    cx.plots.push(("plots/latency-raw.svg".into(), svg));
    let mut html = String::from("<h2 id=\"latency\">Latency</h2>");
    html += &figure("plots/latency-raw.svg", "latency of every operation over time", &esc(&caption));
    let width_s = data::bucket_width_s(cx.end_s, 100);
    let _ = write!(
        html,
        "<h3>Latency quantiles over time</h3><p class=\"note\">Per {width_s} s bucket, over completed operations \
         (ok, failed and timed out), by completion time.</p>"
    );
    // The runner's final reads all happen at the end: no curve to draw.
    for kind in kinds(cx.samples).into_iter().filter(|k| k != "final read") {
        let points = data::quantiles_over_time(cx.samples, &kind, width_s);
        let svg = plot::latency_quantiles(&kind, &points, &cx.faults, cx.end_s)?;
        let file = format!("plots/latency-quantiles-{}.svg", slug(&kind));
        html +=
            &figure(&file, &format!("{kind} latency quantiles"), &format!("<b>{}</b>: p50, p95, p99, max", esc(&kind)));
        cx.plots.push((file, svg));
    }
    Ok(html)
}

fn throughput(cx: &mut Context) -> Result<String, ReportError> {
    let width_s = data::bucket_width_s(cx.end_s, 100);
    let buckets = data::throughput(cx.samples, width_s, cx.end_s);
    let svg = plot::throughput(&buckets, &cx.faults, cx.end_s)?;
    cx.plots.push(("plots/throughput.svg".into(), svg));
    let never = cx.samples.iter().filter(|s| s.complete_s.is_none()).count();
    let caption = format!(
        "Completions per second ({width_s} s buckets) by outcome: ok (green), failed (red), unknown (orange). \
         {never} operations never completed and are not counted. Shaded: faults."
    );
    Ok(format!(
        "<h2 id=\"throughput\">Throughput and availability over time</h2>{}",
        figure("plots/throughput.svg", "throughput by outcome over time", &esc(&caption))
    ))
}

fn availability(cx: &Context) -> String {
    let rows: Vec<Vec<String>> = data::phase_table(cx.samples, &cx.faults)
        .into_iter()
        .map(|r| {
            let num = |text: String| format!("<span class=\"num\">{text}</span>");
            vec![
                esc(&r.kind),
                esc(&r.phase),
                num(r.total.to_string()),
                num(format!("{:.1}%", r.availability() * 100.0)),
                num(r.by_outcome[Outcome::Fail as usize].to_string()),
                num(r.by_outcome[Outcome::Info as usize].to_string()),
                num(ms(r.p50_ms)),
                num(ms(r.p99_ms)),
                num(ms(r.max_ms)),
            ]
        })
        .collect();
    let header = ["operation", "phase", "ops", "available (ok)", "failed", "unknown", "p50", "p99", "max"];
    format!(
        "<h2 id=\"availability\">Availability and latency, healthy vs under each fault</h2>\
         <p class=\"note\">An operation belongs to the faults active when it was invoked. Latency over successful \
         operations.</p>{}",
        table(&header, &rows)
    )
}

fn staleness(cx: &mut Context) -> Result<String, ReportError> {
    let mut html = String::from("<h2 id=\"staleness\">Staleness of eventual reads</h2>");
    let Some(result) = cx.run.results.iter().find(|r| r.checker == "staleness") else {
        return Ok(html + "<p>This workload makes no plain eventual reads (no staleness check ran).</p>");
    };
    let evidence = &result.evidence;
    let reads = evidence["eventual_reads"].as_u64().unwrap_or(0);
    let samples: Vec<f64> = evidence["ms_behind_samples"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let fresh = reads.saturating_sub(samples.len() as u64);
    let svg = plot::staleness(fresh, &samples)?;
    cx.plots.push(("plots/staleness.svg".into(), svg));
    let caption = "Plain eventual reads (no session timestamp): fresh ones, and how long before the read began \
                   the first newer acknowledged write had been acknowledged (the t-visibility of probabilistically \
                   bounded staleness).";
    let _ = write!(html, "<p>{}</p>", esc(&result.reason));
    html += &figure("plots/staleness.svg", "staleness distribution", caption);
    Ok(html)
}

/// The samples on `key` around the anomaly, and the time range to draw.
/// An anomaly's timeline: its bars, its time range, whether bars were cut.
struct Timeline<'s> {
    bars: Vec<Bar<'s>>,
    from_s: f64,
    to_s: f64,
    truncated: bool,
}

fn timeline_bars<'s>(samples: &'s [Sample], anomaly: &Anomaly) -> Option<Timeline<'s>> {
    let involved: Vec<&Sample> =
        anomaly.culprits.iter().chain(&anomaly.named).filter_map(|&i| data::by_index(samples, i)).collect();
    let from = involved.iter().map(|s| s.invoke_s).fold(f64::INFINITY, f64::min);
    let to = involved.iter().map(|s| s.complete_s.unwrap_or(s.invoke_s)).fold(f64::NEG_INFINITY, f64::max);
    if !from.is_finite() || !to.is_finite() {
        return None;
    }
    // Enough before and after to see what the key went through.
    let pad = ((to - from) * 0.15).max(0.25);
    let (from, to) = ((from - pad).max(0.0), to + pad);
    let role = |s: &Sample| {
        if anomaly.culprits.contains(&s.index) {
            Role::Culprit
        } else if anomaly.named.contains(&s.index) {
            Role::Named
        } else {
            Role::Context
        }
    };
    let mut bars: Vec<Bar> = samples
        .iter()
        .filter(|s| s.detail.as_ref().is_some_and(|d| d.key == anomaly.key))
        .filter(|s| s.invoke_s <= to && s.complete_s.unwrap_or(f64::INFINITY) >= from)
        .map(|s| Bar { sample: s, role: role(s) })
        .collect();
    // Keep the involved ones and the context nearest the culprit.
    let truncated = bars.len() > MAX_TIMELINE_BARS;
    if truncated {
        let centre = involved.first().map_or(from, |s| s.invoke_s);
        bars.sort_by(|a, b| {
            (a.role == Role::Context, (a.sample.invoke_s - centre).abs())
                .partial_cmp(&(b.role == Role::Context, (b.sample.invoke_s - centre).abs()))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        bars.truncate(MAX_TIMELINE_BARS);
    }
    Some(Timeline { bars, from_s: from, to_s: to, truncated })
}

fn anomaly_section(cx: &mut Context) -> Result<String, ReportError> {
    let found = anomalies(&cx.run.results);
    let mut html = String::from("<h2 id=\"anomalies\">Anomalies</h2>");
    if found.is_empty() {
        return Ok(html + "<p>None: no checker found an operation it could not explain.</p>");
    }
    let _ = write!(
        html,
        "<p>{} anomalies. Each timeline shows the operations on the key around it, one row per process, from \
         invocation to completion: <span style=\"color:#d62728\">■</span> the operation that cannot be explained, \
         <span style=\"color:#ff7f0e\">■</span> the operations the explanation names, \
         <span style=\"color:#aaa\">■</span> others; red lines are nemesis events.</p>",
        found.len()
    );
    for (n, anomaly) in found.iter().enumerate().take(MAX_TIMELINES) {
        let _ = write!(
            html,
            "<div class=\"anomaly\"><h3>#{} · {} · key {}</h3><p>{}</p>",
            n + 1,
            esc(&anomaly.checker),
            esc(&anomaly.key),
            esc(&anomaly.explanation)
        );
        if let Some(Timeline { bars, from_s, to_s, truncated }) = timeline_bars(cx.samples, anomaly) {
            let svg = plot::timeline(&bars, &cx.marks, from_s, to_s)?;
            let file = format!("plots/anomaly-{}.svg", n + 1);
            let caption = if truncated {
                format!("The {MAX_TIMELINE_BARS} operations on the key nearest to it; all are in history.jsonl.")
            } else {
                "Every operation on the key in this time range.".to_owned()
            };
            html += &figure(&file, &format!("timeline of anomaly {}", n + 1), &caption);
            cx.plots.push((file, svg));
            html += &involved_table(&bars);
        }
        html += "</div>";
    }
    if found.len() > MAX_TIMELINES {
        html += &anomaly_list(&found[MAX_TIMELINES..]);
    }
    Ok(html)
}

fn involved_table(bars: &[Bar]) -> String {
    let mut bars: Vec<&Bar> = bars.iter().collect();
    bars.sort_by(|a, b| a.sample.invoke_s.total_cmp(&b.sample.invoke_s));
    let rows: Vec<Vec<String>> = bars
        .iter()
        .map(|b| {
            let s = b.sample;
            let role = match b.role {
                Role::Culprit => "<b>cannot be explained</b>",
                Role::Named => "named",
                Role::Context => "",
            };
            vec![
                s.index.to_string(),
                s.process.to_string(),
                esc(s.detail.as_ref().map_or("", |d| d.description.as_str())),
                s.outcome.name().into(),
                format!("{:.3} s", s.invoke_s),
                s.complete_s.map_or("never".into(), |c| format!("{c:.3} s")),
                role.into(),
            ]
        })
        .collect();
    table(&["history index", "process", "operation", "outcome", "invoked", "completed", "role"], &rows)
}

fn anomaly_list(rest: &[Anomaly]) -> String {
    let rows: Vec<Vec<String>> =
        rest.iter().take(MAX_TABLE_ROWS).map(|a| vec![esc(&a.checker), esc(&a.key), esc(&a.explanation)]).collect();
    let mut html = format!("<h3>{} more anomalies</h3>", rest.len());
    html += &table(&["checker", "key", "explanation"], &rows);
    if rest.len() > MAX_TABLE_ROWS {
        let _ = write!(
            html,
            "<p class=\"note\">{} more: every one is in <a href=\"results.json\">results.json</a>.</p>",
            rest.len() - MAX_TABLE_ROWS
        );
    }
    html
}

fn files(run: &Run) -> String {
    let describe = |file: &str| match file {
        "config.json" => "the scenario, its seed and the command that reproduces it",
        "history.jsonl" => "every operation and fault, one JSON event per line (docs/SPEC.md section 3)",
        "results.json" => "every check's verdict with its full evidence",
        "convergence.json" => "each replica's version of each key after the final heal",
        _ => "node log",
    };
    let mut html = String::from("<h2 id=\"files\">Files</h2><ul>");
    for file in &run.files {
        let _ = write!(html, "<li><a href=\"{}\">{}</a> — {}</li>", esc(&url_path(file)), esc(file), describe(file));
    }
    html + "</ul>"
}
