//! The benchmark's comparison table, `docs/benchmarks.md` and its SVG chart.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::sync::{Delivery, Initial};

pub struct Ingest {
    pub events: usize,
    pub accepted: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub bytes_per_event: f64,
    pub db_bytes: u64,
}

#[derive(Clone)]
pub struct Send {
    pub target: String,
    pub concurrency: usize,
    pub ok: usize,
    pub per_s: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// What one server measured (parts not run stay empty).
#[derive(Default)]
pub struct Figures {
    pub sends: Vec<Send>,
    /// `GET /_matrix/client/versions` (no storage, no auth) by concurrency: what the
    /// server and its HTTP front end cost before any work.
    pub noop: Vec<Send>,
    pub delivery: Option<Delivery>,
    pub initial: Option<Initial>,
}

/// How Synapse was run, for the report.
pub struct SynapseInfo {
    pub version: String,
    pub python: String,
    /// Seconds the install took in this run; `None` when it was already installed.
    pub install_s: Option<f64>,
}

/// Everything one benchmark run produced.
pub struct Run {
    pub command: String,
    pub ingest: Option<Ingest>,
    /// The same kind of history through federation transactions.
    pub federation_ingest: Option<Ingest>,
    pub neurite: Figures,
    /// Synapse's figures, or why there are none.
    pub synapse: Result<(Figures, SynapseInfo), String>,
    pub sends_per_level: usize,
    pub wasm: (u64, u64),
    /// Whether every part ran, so `docs/benchmarks.md` may be replaced.
    pub complete: bool,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `(raw, gzipped)` bytes of the built wasm.
pub fn wasm_size() -> (u64, u64) {
    let wasm = root().join("build/index_bg.wasm");
    let raw = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    let gz = Command::new("bash")
        .arg("-c")
        .arg(format!("gzip -9 -c '{}' | wc -c", wasm.display()))
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0);
    (raw, gz)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("?".into(), |kb| format!("{} GB", kb / 1024 / 1024));
    format!("{cpu}, {cores} cores, {mem} RAM, Linux")
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// One line of the comparison table.
struct Row {
    figure: String,
    higher_is_better: bool,
    neurite: Option<f64>,
    synapse: Option<f64>,
}

fn rows(run: &Run) -> Vec<Row> {
    let synapse = run.synapse.as_ref().ok().map(|(f, _)| f);
    let mut out = Vec::new();
    let mut push = |figure: String, higher: bool, get: &dyn Fn(&Figures) -> Option<f64>| {
        let neurite = get(&run.neurite);
        let synapse = synapse.and_then(get);
        if neurite.is_some() || synapse.is_some() {
            out.push(Row {
                figure,
                higher_is_better: higher,
                neurite,
                synapse,
            });
        }
    };
    let mut cases: Vec<(String, usize)> = run
        .neurite
        .sends
        .iter()
        .chain(synapse.map(|f| f.sends.as_slice()).unwrap_or_default())
        .map(|s| (s.target.clone(), s.concurrency))
        .collect();
    cases.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    cases.dedup();
    for (target, c) in cases {
        let find = |f: &Figures| -> Option<Send> {
            f.sends
                .iter()
                .find(|s| s.target == target && s.concurrency == c)
                .cloned()
        };
        let label = format!("send, {target}, c={c}");
        push(format!("{label}: events/s"), true, &|f| find(f).map(|s| s.per_s));
        push(format!("{label}: p50 ms"), false, &|f| find(f).map(|s| s.p50));
        push(format!("{label}: p95 ms"), false, &|f| find(f).map(|s| s.p95));
        push(format!("{label}: p99 ms"), false, &|f| find(f).map(|s| s.p99));
    }
    for c in [1usize, 32] {
        let find = |f: &Figures| f.noop.iter().find(|s| s.concurrency == c).cloned();
        let label = format!("no-op request (GET /versions), c={c}");
        push(format!("{label}: requests/s"), true, &|f| {
            find(f).map(|s| s.per_s)
        });
        push(format!("{label}: p50 ms"), false, &|f| find(f).map(|s| s.p50));
    }
    push("sync delivery: p50 ms".into(), false, &|f| {
        f.delivery.as_ref().map(|d| d.p50)
    });
    push("sync delivery: p95 ms".into(), false, &|f| {
        f.delivery.as_ref().map(|d| d.p95)
    });
    push("sync delivery: p99 ms".into(), false, &|f| {
        f.delivery.as_ref().map(|d| d.p99)
    });
    push("sync delivery: max ms".into(), false, &|f| {
        f.delivery.as_ref().map(|d| d.max)
    });
    push("initial sync: median ms".into(), false, &|f| {
        f.initial.as_ref().map(|i| i.initial_ms)
    });
    push("incremental sync, nothing new: median ms".into(), false, &|f| {
        f.initial.as_ref().map(|i| i.incremental_ms)
    });
    push(
        "initial-sync set-up (rooms one by one, then messages by 8 senders): s".into(),
        false,
        &|f| f.initial.as_ref().map(|i| i.setup_s),
    );
    out
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn table(run: &Run) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "| figure | Neurite | Synapse | Neurite ÷ Synapse | better |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for r in rows(run) {
        let n = r.neurite.map_or("absent".into(), num);
        let s = r.synapse.map_or("absent".into(), num);
        let (ratio, better) = match (r.neurite, r.synapse) {
            (Some(n), Some(s)) if n > 0.0 && s > 0.0 => {
                let neurite_wins = if r.higher_is_better { n > s } else { n < s };
                let factor = if n > s { n / s } else { s / n };
                let who = if (factor - 1.0).abs() < 0.05 {
                    "even".to_owned()
                } else if neurite_wins {
                    format!("Neurite, {factor:.1}×")
                } else {
                    format!("Synapse, {factor:.1}×")
                };
                (format!("{:.2}", n / s), who)
            }
            _ => ("–".into(), "–".into()),
        };
        let _ = writeln!(md, "| {} | {n} | {s} | {ratio} | {better} |", r.figure);
    }
    md
}

/// A panel of the chart: one value of `Send` against concurrency, both servers,
/// both targets.
fn panel(
    svg: &mut String,
    x0: f64,
    title: &str,
    unit: &str,
    series: &[(&str, &str, &[Send])],
    value: fn(&Send) -> f64,
) {
    let (w, h, top, left, bottom) = (420.0, 330.0, 40.0, 55.0, 40.0);
    let xs = [1usize, 8, 32];
    let max = series
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(value))
        .fold(0.0, f64::max);
    // A round upper bound: 1, 2 or 5 times a power of ten.
    let step = {
        let raw = (max.max(1.0) * 1.05) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag)
    };
    let top_value = step * 5.0;
    let plot_w = w - left - 20.0;
    let plot_h = h - top - bottom;
    let px = |c: usize| {
        x0 + left + 20.0 + (xs.iter().position(|v| *v == c).unwrap_or(0) as f64) * (plot_w - 40.0) / 2.0
    };
    let py = |v: f64| top + plot_h - v / top_value * plot_h;
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"24\" font-size=\"13\" font-weight=\"bold\">{title}</text>",
        x0 + left
    );
    for k in 0..=5 {
        let v = step * k as f64;
        let y = py(v);
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 + left,
            x0 + left + plot_w,
            x0 + left - 4.0,
            y + 4.0,
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                num(v)
            }
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 {:.1} {:.1})\">{unit}</text>",
        x0 + 14.0,
        top + plot_h / 2.0,
        x0 + 14.0,
        top + plot_h / 2.0
    );
    for c in xs {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{c}</text>",
            px(c),
            top + plot_h + 16.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">concurrent senders</text>",
        x0 + left + plot_w / 2.0,
        top + plot_h + 32.0
    );
    for (target, dash) in [("1 room", ""), ("20 rooms", " stroke-dasharray=\"6,4\"")] {
        for (_, color, sends) in series {
            let points: Vec<(f64, f64)> = sends
                .iter()
                .filter(|s| s.target == target)
                .map(|s| (px(s.concurrency), py(value(s))))
                .collect();
            let line: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
                line.join(" ")
            );
            for (x, y) in points {
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>"
                );
            }
        }
    }
}

/// Throughput and median latency of `PUT /send` against concurrency, both servers.
fn chart(run: &Run) -> String {
    let mut series: Vec<(&str, &str, &[Send])> = vec![("Neurite", "#1f77b4", &run.neurite.sends)];
    if let Ok((f, _)) = &run.synapse {
        series.push(("Synapse", "#2ca02c", &f.sends));
    }
    let (w, h) = (860.0, 380.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    panel(&mut svg, 0.0, "PUT /send throughput", "events/s", &series, |s| {
        s.per_s
    });
    panel(&mut svg, 430.0, "PUT /send latency, p50", "ms", &series, |s| {
        s.p50
    });
    let mut x = 60.0;
    let y = h - 12.0;
    for (name, color, _) in &series {
        for (target, dash) in [("1 room", ""), ("20 rooms", " stroke-dasharray=\"6,4\"")] {
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>\
                 <text x=\"{:.1}\" y=\"{y:.1}\">{name}, {target}</text>",
                y - 4.0,
                x + 28.0,
                y - 4.0,
                x + 34.0
            );
            x += 190.0;
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Prints the comparison and, for a complete run, writes `docs/benchmarks.md` and
/// `docs/benchmarks-send.svg`.
pub fn write(run: &Run) {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Neurite and Synapse side by side, produced by `{}` (the README's benchmark command) \
         at commit `{}`.\n",
        run.command,
        git_commit()
    );
    let _ = writeln!(md, "Machine: {}.\n", machine());
    let _ = writeln!(
        md,
        "- Neurite: the release wasm under workerd via `wrangler dev`, on loopback."
    );
    match &run.synapse {
        Ok((_, info)) => {
            let _ = writeln!(
                md,
                "- Synapse {} from PyPI ({}), one process, SQLite, on loopback; installed into \
                 `target/bench/synapse/venv` ({}).",
                info.version,
                info.python,
                info.install_s
                    .map_or("already installed in this run".into(), |s| format!(
                        "the install took {s:.0} s in this run"
                    ))
            );
        }
        Err(why) => {
            let _ = writeln!(md, "- Synapse: absent from this run ({why}).");
        }
    }
    let _ = writeln!(
        md,
        "- The client (Rust, blocking HTTP/1.1 over loopback) runs on the same two cores. \
         The servers are measured one after the other, never at the same time.\n"
    );
    let _ = writeln!(md, "## Neurite and Synapse\n");
    let _ = writeln!(
        md,
        "`Neurite ÷ Synapse` is the plain ratio of the two figures; `better` names the \
         server with the better figure (higher events/s, lower ms) and by how many times.\n"
    );
    md.push_str(&table(run));
    let _ = writeln!(md);
    let _ = writeln!(md, "Workloads, the same for both servers:\n");
    let _ = writeln!(
        md,
        "- send: one user sends {} `m.room.message` events with `PUT /rooms/{{roomId}}/send` per \
         row, from 1, 8 or 32 threads at a time, into one room or spread over 20 rooms; \
         events/s counts successful sends over the wall time, pN is the latency of one request.",
        run.sends_per_level
    );
    let _ = writeln!(
        md,
        "- no-op request: {} `GET /_matrix/client/versions` (no storage, no authentication) from 1 \
         or 32 threads: the ceiling the server and its HTTP front end put on any request. For \
         Neurite that front end is `wrangler dev`'s local proxy and router, which a deployed \
         worker does not have.",
        run.sends_per_level
    );
    if let Some(d) = run.neurite.delivery.as_ref() {
        let _ = writeln!(
            md,
            "- sync delivery: user B holds a long-poll `/sync` (timeout 30 s); user A sends a \
             message to their shared room; the time from the start of A's send until B's \
             `/sync` returns with it, over {} sequential messages.",
            d.n
        );
    }
    if let Some(i) = run.neurite.initial.as_ref() {
        let _ = writeln!(
            md,
            "- initial sync: a user in {} rooms of {} messages each (rooms created one by one, \
             then the messages sent by 8 senders at a time), the median of 5 `/sync` calls without a token; then the median of 20 \
             `/sync?timeout=0` calls with the latest token and nothing new.",
            i.rooms, i.per_room
        );
    }
    if run.synapse.is_ok() {
        let _ = writeln!(
            md,
            "\nSynapse's configuration (written by `bench/synapse.rs`): SQLite, one plain-HTTP \
             client listener on 127.0.0.1, open registration without verification (users \
             register with `m.login.dummy`), a registration shared secret, a fresh signing key, \
             no federation listener and no trusted key servers, `report_stats: false`, \
             metrics off, logging at WARNING to a file, every `rc_*` rate limiter raised to \
             10⁶/s with a burst of 10⁶, and `caches.sync_response_cache_duration: 0` (the \
             default, 2 minutes, would answer the repeated initial syncs from a cache). Presence \
             and everything else are Synapse's defaults. Synapse on PostgreSQL or with workers \
             would be faster; this is the single-process SQLite set-up comparable to one \
             `wrangler dev`."
        );
    }
    let _ = writeln!(md, "\n![PUT /send throughput and p50 latency against concurrency, Neurite and Synapse](benchmarks-send.svg)\n");
    if let Some(ingest) = &run.ingest {
        let _ = writeln!(md, "## Room history ingest (Neurite only)\n");
        let _ = writeln!(
            md,
            "A generated {}-event room (v12) from three servers, fed through the roomserver's input pipeline \
             (batch signature and hash verification, auth against auth events / state before / current state, \
             state resolution of forks, persistence, outbox) in batches of 500 via Neurite's admin input \
             endpoint (Synapse has no counterpart to drive the same way).\n",
            ingest.events
        );
        let _ = writeln!(
            md,
            "| events | accepted | seconds | events/s | room SQLite bytes | bytes/event |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | **{:.0}** | {} | {:.0} |\n",
            ingest.events,
            ingest.accepted,
            ingest.seconds,
            ingest.events_per_s,
            ingest.db_bytes,
            ingest.bytes_per_event
        );
    }
    if let Some(fed) = &run.federation_ingest {
        let _ = writeln!(
            md,
            "## Room history through federation transactions (Neurite only)\n"
        );
        let _ = writeln!(
            md,
            "The same kind of generated history ({} events after the room's set-up) from three scripted \
             remote servers on loopback, each serving its signing key, delivered through signed \
             `PUT /_matrix/federation/v1/send` transactions of 50 PDUs, the servers taking turns: \
             X-Matrix verified, keys fetched once, every event through the same input pipeline.\n",
            fed.events
        );
        let _ = writeln!(md, "| events | accepted | seconds | events/s |");
        let _ = writeln!(md, "|---|---|---|---|");
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | **{:.0}** |\n",
            fed.events, fed.accepted, fed.seconds, fed.events_per_s
        );
    }
    let _ = writeln!(md, "## Size\n");
    let _ = writeln!(
        md,
        "wasm: {} bytes raw, {} bytes gzipped ({:.0} KB; the Workers free-plan limit is 3 MB).",
        run.wasm.0,
        run.wasm.1,
        run.wasm.1 as f64 / 1024.0
    );
    println!("{md}");
    let scratch = root().join("target/bench");
    let _ = std::fs::create_dir_all(&scratch);
    let _ = std::fs::write(scratch.join("benchmarks.md"), &md);
    let _ = std::fs::write(scratch.join("benchmarks-send.svg"), chart(run));
    if !run.complete {
        eprintln!(
            "[bench] a partial run: docs/benchmarks.md left as it was; this run's report is in target/bench/"
        );
        return;
    }
    let docs = root().join("docs");
    let _ = std::fs::create_dir_all(&docs);
    if let Err(e) = std::fs::write(docs.join("benchmarks.md"), &md) {
        eprintln!("[bench] could not write docs/benchmarks.md: {e}");
    }
    if let Err(e) = std::fs::write(docs.join("benchmarks-send.svg"), chart(run)) {
        eprintln!("[bench] could not write docs/benchmarks-send.svg: {e}");
    }
}
