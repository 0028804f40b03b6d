//! The benchmark's table, `docs/benchmarks.md` and its SVG chart.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

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
    format!("{cpu}, {cores} cores, {mem} RAM, Linux; workerd via `wrangler dev` on loopback")
}

fn chart(sends: &[Send]) -> String {
    let (w, h, pad) = (640.0, 320.0, 50.0);
    let max_rate = sends.iter().map(|s| s.per_s).fold(1.0, f64::max) * 1.1;
    let max_lat = sends.iter().map(|s| s.p95).fold(1.0, f64::max) * 1.1;
    let xs = [1usize, 8, 32];
    let x = |c: usize| pad + (xs.iter().position(|v| *v == c).unwrap_or(0) as f64) * (w - 2.0 * pad) / 2.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"18\" font-size=\"13\">PUT /send: throughput (solid, events/s) and p95 latency (dashed, ms) vs concurrency</text>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - pad,
        w - pad,
        h - pad
    );
    for c in xs {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">c={c}</text>",
            x(c),
            h - pad + 16.0
        );
    }
    let _ = writeln!(svg, "<text x=\"4\" y=\"{}\">{:.0}/s</text>", pad, max_rate);
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\">{:.0} ms</text>",
        w - pad + 4.0,
        pad,
        max_lat
    );
    for (target, color) in [("1 room", "#1f77b4"), ("20 rooms", "#d62728")] {
        let series: Vec<&Send> = sends.iter().filter(|s| s.target == target).collect();
        let rate: Vec<String> = series
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{:.1}",
                    x(s.concurrency),
                    h - pad - s.per_s / max_rate * (h - 2.0 * pad)
                )
            })
            .collect();
        let lat: Vec<String> = series
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{:.1}",
                    x(s.concurrency),
                    h - pad - s.p95 / max_lat * (h - 2.0 * pad)
                )
            })
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            rate.join(" ")
        );
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"5,4\" points=\"{}\"/>",
            lat.join(" ")
        );
        let ly = if target == "1 room" { 36.0 } else { 50.0 };
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{ly}\" fill=\"{color}\">{target}</text>",
            w - pad - 60.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Prints the table and writes `docs/benchmarks.md` and `docs/benchmarks-send.svg`.
pub fn write(ingest: &Ingest, sends: &[Send], wasm: (u64, u64)) {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Produced by `cargo run --release --example bench` (the README's benchmark command).\n"
    );
    let _ = writeln!(md, "Machine: {}.\n", machine());
    let _ = writeln!(md, "## Room history ingest\n");
    let _ = writeln!(
        md,
        "A generated {}-event room (v12) from three servers, fed through the roomserver's input pipeline \
         (batch signature and hash verification, auth against auth events / state before / current state, \
         state resolution of forks, persistence, outbox) in batches of 500 via the admin input endpoint.\n",
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
    let _ = writeln!(md, "## Client send (`PUT /rooms/{{roomId}}/send`)\n");
    let _ = writeln!(
        md,
        "| target | concurrency | sends | events/s | p50 ms | p95 ms | p99 ms |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for s in sends {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            s.target, s.concurrency, s.ok, s.per_s, s.p50, s.p95, s.p99
        );
    }
    let _ = writeln!(md, "\n![send throughput and latency](benchmarks-send.svg)\n");
    let _ = writeln!(md, "## Size\n");
    let _ = writeln!(
        md,
        "wasm: {} bytes raw, {} bytes gzipped ({:.0} KB; the Workers free-plan limit is 3 MB).",
        wasm.0,
        wasm.1,
        wasm.1 as f64 / 1024.0
    );
    println!("{md}");
    let docs = root().join("docs");
    let _ = std::fs::create_dir_all(&docs);
    if let Err(e) = std::fs::write(docs.join("benchmarks.md"), &md) {
        eprintln!("[bench] could not write docs/benchmarks.md: {e}");
    }
    let _ = std::fs::write(docs.join("benchmarks-send.svg"), chart(sends));
}
