//! The report: results by section, the project's performance targets (set
//! in `Results::into_report`, `suite.rs`), and the machine they were
//! measured on, rendered as markdown.

use std::fmt::Write as _;

use crate::load::Measurement;

/// Below this many samples p999 is not meaningful and is left out.
const P999_MIN_SAMPLES: u64 = 1_000;

/// The latency summary of one measured row.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub calls: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub calls_per_sec: f64,
    /// CPU time per call, where it was measured.
    pub cpu: Option<CpuPerCall>,
}

impl From<&Measurement> for Summary {
    fn from(m: &Measurement) -> Summary {
        Summary {
            calls: m.calls,
            p50_us: m.quantile_us(0.5),
            p99_us: m.quantile_us(0.99),
            p999_us: m.quantile_us(0.999),
            calls_per_sec: m.calls_per_sec(),
            cpu: None,
        }
    }
}

/// CPU time per call, in µs: of the processes serving the calls, and of the
/// caller (the load generator and the system's client library).
#[derive(Debug, Clone, Copy)]
pub struct CpuPerCall {
    pub servers_us: Option<f64>,
    pub client_us: Option<f64>,
}

/// What became of one row.
#[derive(Debug, Clone)]
pub enum Outcome {
    Measured(Summary),
    /// Not applicable here, with the reason (e.g. a host without reuse mode).
    NotApplicable(String),
    /// The measurement failed, with the error.
    Failed(String),
}

/// One line of a results table: a system under one load.
#[derive(Debug, Clone)]
pub struct Row {
    pub system: String,
    pub load: String,
    pub outcome: Outcome,
}

/// A titled results table, after the section's own comparisons if it has
/// any.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub note: String,
    /// Ratios between the section's rows, with their goals.
    pub targets: Vec<Target>,
    pub rows: Vec<Row>,
}

/// A performance target of the project and how the run fared against it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub goal: Goal,
    /// The measured value and how it was computed, when the inputs exist.
    pub measured: Option<(f64, String)>,
}

#[derive(Debug, Clone, Copy)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
    /// No goal: the figure is reported for scale.
    Reported,
}

impl Target {
    /// A ratio target: `numerator / denominator`, each given with its label.
    pub fn ratio(
        name: &str,
        goal: Goal,
        numerator: Option<(f64, String)>,
        denominator: Option<(f64, String)>,
    ) -> Target {
        let measured = match (numerator, denominator) {
            (Some((n, n_text)), Some((d, d_text))) if d > 0.0 => {
                Some((n / d, format!("{n_text} / {d_text}")))
            }
            _ => None,
        };
        Target {
            name: name.to_owned(),
            goal,
            measured,
        }
    }

    /// Adds `note` to the measured figure's description.
    pub fn noting(mut self, note: Option<String>) -> Target {
        if let (Some((_, text)), Some(note)) = (self.measured.as_mut(), note) {
            text.push_str("; ");
            text.push_str(&note);
        }
        self
    }

    fn verdict(&self) -> &'static str {
        match (self.measured.as_ref(), self.goal) {
            (None, _) => "not measured",
            (Some((v, _)), Goal::AtMost(g)) if *v <= g => "**met**",
            (Some((v, _)), Goal::AtLeast(g)) if *v >= g => "**met**",
            (Some(_), Goal::Reported) => "–",
            _ => "**missed**",
        }
    }
}

/// The machine a run was measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub date: String,
}

impl Machine {
    /// Reads /proc and asks `rustc`.
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let kib: f64 = m
                    .lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                Some(format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| format!("Linux {}", k.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.into());
        let rustc = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory,
            kernel,
            rustc,
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    /// The command and parameters of the run, one sentence.
    pub parameters: String,
    pub targets: Vec<Target>,
    pub sections: Vec<Section>,
    /// Labelled facts measured outside the tables (memory, ...).
    pub facts: Vec<(String, String)>,
}

impl Report {
    /// The report as a markdown document.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = write!(
            md,
            "# wasmrpc benchmarks\n\n\
             Measured by `bench/` ([bench/README.md](bench/README.md) explains the \
             rows and the targets). {}\n\n\
             | machine | |\n|---|---|\n\
             | CPU | {} |\n| cores | {} |\n| memory | {} |\n| kernel | {} |\n\
             | rustc | {} |\n| date | {} |\n\n",
            self.parameters, m.cpu, m.cores, m.memory, m.kernel, m.rustc, m.date
        );

        md.push_str("## Targets\n\n");
        targets_table(&mut md, "target", &self.targets);

        for section in &self.sections {
            let _ = write!(md, "\n## {}\n\n{}\n\n", section.title, section.note);
            if !section.targets.is_empty() {
                targets_table(&mut md, "comparison", &section.targets);
                md.push('\n');
            }
            md.push_str(
                "| system | load | calls | p50 µs | p99 µs | p999 µs | calls/s |\n\
                 |---|---|---:|---:|---:|---:|---:|\n",
            );
            for row in &section.rows {
                let cells = match &row.outcome {
                    Outcome::Measured(s) => format!(
                        "{} | {:.1} | {:.1} | {} | {}",
                        thousands(s.calls as f64),
                        s.p50_us,
                        s.p99_us,
                        if s.calls >= P999_MIN_SAMPLES {
                            format!("{:.1}", s.p999_us)
                        } else {
                            "–".into()
                        },
                        thousands(s.calls_per_sec)
                    ),
                    Outcome::NotApplicable(why) => format!("n/a ({why}) | | | | "),
                    Outcome::Failed(error) => format!("failed: {} | | | | ", one_line(error)),
                };
                let _ = writeln!(md, "| {} | {} | {cells} |", row.system, row.load);
            }
        }

        let measured = self
            .sections
            .iter()
            .flat_map(|s| &s.rows)
            .filter_map(|row| match &row.outcome {
                Outcome::Measured(Summary { cpu: Some(cpu), .. }) => Some((row, cpu)),
                _ => None,
            });
        let mut cpu_rows = measured.peekable();
        if cpu_rows.peek().is_some() {
            md.push_str(
                "\n## CPU per call\n\n\
                 CPU time per completed call in the interleaved rounds above, in µs, \
                 from the kernel's per-thread accounting: of the processes serving the \
                 calls (every host of a forwarded call; the relay and the server behind \
                 it for the relayed rows), and of the caller (this benchmark's process: \
                 the load generator and the system's client). It includes work done \
                 after a reply, such as a host's instance teardown. On a machine with \
                 two cores, servers and caller share them.\n\n\
                 | system | load | servers µs | caller µs |\n|---|---|---:|---:|\n",
            );
            let us = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"));
            for (row, cpu) in cpu_rows {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    row.system,
                    row.load,
                    us(cpu.servers_us),
                    us(cpu.client_us)
                );
            }
        }

        if !self.facts.is_empty() {
            md.push_str("\n## Memory\n\n| measure | value |\n|---|---:|\n");
            for (label, value) in &self.facts {
                let _ = writeln!(md, "| {label} | {value} |");
            }
        }
        md
    }
}

/// A table of `targets`, the first column headed `what`: each measured
/// value, how it was computed, its goal and whether it is met.
fn targets_table(md: &mut String, what: &str, targets: &[Target]) {
    let _ = write!(md, "| {what} | measured | goal | |\n|---|---|---|---|\n");
    for t in targets {
        let measured = match &t.measured {
            Some((value, how)) => format!("{value:.2} ({how})"),
            None => "–".into(),
        };
        let goal = match t.goal {
            Goal::AtMost(g) => format!("≤ {g}"),
            Goal::AtLeast(g) => format!("≥ {g}"),
            Goal::Reported => "–".into(),
        };
        let _ = writeln!(md, "| {} | {measured} | {goal} | {} |", t.name, t.verdict());
    }
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An error on one line, with table pipes escaped.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sections: Vec<Section>) -> Report {
        Report {
            machine: Machine {
                cpu: "cpu".into(),
                cores: 2,
                memory: "1 GiB".into(),
                kernel: "Linux".into(),
                rustc: "rustc".into(),
                date: "today".into(),
            },
            parameters: "One run.".into(),
            targets: Vec::new(),
            sections,
            facts: Vec::new(),
        }
    }

    fn figure(value: f64, what: &str) -> Option<(f64, String)> {
        Some((value, format!("{value} {what}")))
    }

    #[test]
    fn a_section_shows_its_comparisons_with_verdicts_before_its_rows() {
        let section = Section {
            title: "TLS".into(),
            note: "What TLS costs.".into(),
            targets: vec![
                Target::ratio(
                    "latency",
                    Goal::AtMost(1.15),
                    figure(22.0, "TLS"),
                    figure(20.0, "plaintext"),
                ),
                Target::ratio(
                    "throughput",
                    Goal::AtLeast(0.85),
                    figure(80.0, "TLS"),
                    figure(100.0, "plaintext"),
                ),
                Target::ratio(
                    "handshake",
                    Goal::Reported,
                    figure(300.0, "TLS"),
                    figure(100.0, "plaintext"),
                ),
                Target::ratio("unmeasured", Goal::Reported, None, figure(1.0, "x")),
            ],
            rows: vec![Row {
                system: "`math.add`, TLS".into(),
                load: "1 in flight".into(),
                outcome: Outcome::NotApplicable("skipped".into()),
            }],
        };
        let md = report(vec![section]).to_markdown();
        let tls = &md[md.find("## TLS").unwrap()..];
        let expected = "## TLS\n\nWhat TLS costs.\n\n\
            | comparison | measured | goal | |\n|---|---|---|---|\n\
            | latency | 1.10 (22 TLS / 20 plaintext) | ≤ 1.15 | **met** |\n\
            | throughput | 0.80 (80 TLS / 100 plaintext) | ≥ 0.85 | **missed** |\n\
            | handshake | 3.00 (300 TLS / 100 plaintext) | – | – |\n\
            | unmeasured | – | – | not measured |\n\n\
            | system | load | calls |";
        assert!(tls.starts_with(expected), "{tls}");
    }

    #[test]
    fn a_section_without_comparisons_starts_with_its_rows() {
        let section = Section {
            title: "Payload echo".into(),
            note: "Bytes.".into(),
            targets: Vec::new(),
            rows: Vec::new(),
        };
        let md = report(vec![section]).to_markdown();
        assert!(
            md.contains("## Payload echo\n\nBytes.\n\n| system | load | calls |"),
            "{md}"
        );
    }
}
