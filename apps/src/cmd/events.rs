//! `anomaly events`: the stored anomaly events, newest first, as a table for people or JSON lines
//! for scripts, without writing SQL.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};

use super::collect::parse_duration;
use crate::store::{AnomalyRow, EventFilter, Store, redact_url};

/// Arguments of `anomaly events`.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Where the detector stores anomaly events: a `postgres://` URL or an SQLite file path.
    #[arg(long, env = "ANOMALY_DATABASE_URL", default_value = "anomalies.db")]
    pub database_url: String,
    /// Only this host's events.
    #[arg(long)]
    pub host: Option<String>,
    /// Only events still running within this long before now (e.g. `30m`, `1h`, `7d`).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Only events of this severity.
    #[arg(long, value_enum)]
    pub severity: Option<Severity>,
    /// Only events that have not ended.
    #[arg(long)]
    pub open: bool,
    /// At most this many events, the newest.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// An event's severity on the command line ([`anomaly_core::Severity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Severity {
    /// The peak score passed the threshold.
    Warning,
    /// The peak score reached the critical ratio of the threshold.
    Critical,
}

impl From<Severity> for anomaly_core::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Warning => Self::Warning,
            Severity::Critical => Self::Critical,
        }
    }
}

impl EventsArgs {
    /// The store filter these flags ask for, `now` being the current time.
    pub fn filter(&self, now: DateTime<Utc>) -> anyhow::Result<EventFilter> {
        let since = match self.since {
            Some(back) => Some(
                chrono::Duration::from_std(back)
                    .ok()
                    .and_then(|back| now.checked_sub_signed(back))
                    .context("--since reaches too far back")?,
            ),
            None => None,
        };
        Ok(EventFilter {
            host: self.host.clone(),
            since,
            severity: self
                .severity
                .map(|s| anomaly_core::Severity::from(s).as_str().to_string()),
            open_only: self.open,
            limit: Some(i64::from(self.limit)),
        })
    }
}

/// Lists the events the flags select on standard output; none is not an error.
pub fn run(args: EventsArgs) -> anyhow::Result<()> {
    let filter = args.filter(Utc::now())?;
    let mut store = Store::open(&args.database_url)
        .with_context(|| format!("cannot open {}", redact_url(&args.database_url)))?;
    let rows = store.list_events(&filter)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for row in &rows {
            serde_json::to_writer(&mut out, row)?;
            writeln!(out)?;
        }
    } else if rows.is_empty() {
        writeln!(out, "no anomaly events{}", describe(&filter))?;
    } else {
        write_table(&mut out, &rows)?;
    }
    Ok(())
}

/// " for host web-1, open, since ..." for the line that says nothing matched.
fn describe(filter: &EventFilter) -> String {
    let mut parts = Vec::new();
    if let Some(host) = &filter.host {
        parts.push(format!("for host {host}"));
    }
    if let Some(severity) = &filter.severity {
        parts.push(format!("of severity {severity}"));
    }
    if filter.open_only {
        parts.push("open".to_string());
    }
    if let Some(since) = filter.since {
        parts.push(format!(
            "running since {}",
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" {}", parts.join(", "))
    }
}

/// The events as an aligned table: one line each, newest first.
pub fn write_table(out: &mut impl Write, rows: &[AnomalyRow]) -> std::io::Result<()> {
    let header = [
        "START",
        "END",
        "HOST",
        "SEVERITY",
        "SCORE",
        "THRESHOLD",
        "STATE",
        "TOP METRICS",
    ];
    let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let lines: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                time(&r.window_start),
                time(&r.window_end),
                r.host.clone(),
                r.severity.clone(),
                format!("{:.2}", r.score),
                format!("{:.2}", r.threshold),
                if r.closed { "ended" } else { "open" }.to_string(),
                top_metrics(&r.top_metrics),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let write_line = |out: &mut dyn Write, cells: &[&str]| -> std::io::Result<()> {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                writeln!(out, "{cell}")?;
            } else {
                write!(out, "{cell:<width$}  ", width = widths[i])?;
            }
        }
        Ok(())
    };
    write_line(out, &header)?;
    for line in &lines {
        let cells: Vec<&str> = line.iter().map(String::as_str).collect();
        write_line(out, &cells)?;
    }
    Ok(())
}

/// `cpu_busy 71%, disk_io 20%` from the stored `[{"metric": ..., "share": ...}]`.
fn top_metrics(stored: &serde_json::Value) -> String {
    let Some(items) = stored.as_array() else {
        return String::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let metric = item.get("metric")?.as_str()?;
            let share = item.get("share")?.as_f64()?;
            Some(format!("{metric} {:.0}%", share * 100.0))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(host: &str, closed: bool) -> AnomalyRow {
        AnomalyRow {
            host: host.to_string(),
            window_start: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
            window_end: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 30).unwrap(),
            score: 4.25,
            threshold: 2.0,
            severity: "critical".to_string(),
            top_metrics: serde_json::json!([
                {"metric": "cpu_busy", "share": 0.71},
                {"metric": "disk_io", "share": 0.2}
            ]),
            model_version: "v1".to_string(),
            closed,
        }
    }

    #[test]
    fn the_table_aligns_its_columns_and_names_state_and_top_metrics() {
        let mut out = Vec::new();
        write_table(&mut out, &[row("web-1", false), row("db-primary-7", true)]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("START"));
        assert!(lines[1].contains("web-1") && lines[1].contains(" open "));
        assert!(lines[2].contains("db-primary-7") && lines[2].contains(" ended "));
        assert!(lines[1].ends_with("cpu_busy 71%, disk_io 20%"), "{text}");
        // Columns line up: the host column starts at the same place on every line.
        let at = |line: &str, what: &str| line.find(what).unwrap();
        assert_eq!(at(lines[0], "HOST"), at(lines[1], "web-1"));
        assert_eq!(at(lines[0], "SEVERITY"), at(lines[2], "critical"));
    }

    #[test]
    fn flags_become_a_store_filter_relative_to_now() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: EventsArgs,
        }
        let args = Cli::try_parse_from([
            "events",
            "--host",
            "web-1",
            "--since",
            "1h",
            "--severity",
            "critical",
            "--open",
        ])
        .unwrap()
        .args;
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let filter = args.filter(now).unwrap();
        assert_eq!(
            filter,
            EventFilter {
                host: Some("web-1".to_string()),
                since: Some(Utc.with_ymd_and_hms(2026, 12, 1, 11, 0, 0).unwrap()),
                severity: Some("critical".to_string()),
                open_only: true,
                limit: Some(100),
            }
        );
        assert!(describe(&filter).contains("for host web-1"));
        assert!(Cli::try_parse_from(["events", "--severity", "loud"]).is_err());
    }
}
