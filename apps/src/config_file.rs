//! The optional TOML configuration file of every subcommand.
//!
//! A file holds one table per subcommand whose keys are the subcommand's long flag names:
//!
//! ```toml
//! [detect]
//! brokers = "kafka:9092"
//! database-url = "postgres://anomaly@db/anomaly"
//! baseline-samples = 3600
//!
//! [collect]
//! interval = "1s"
//! ```
//!
//! Precedence, highest first: command-line flags, environment variables, the file, built-in
//! defaults. The file is named by `--config-file PATH` (or `ANOMALY_CONFIG_FILE`), before the
//! subcommand or after it.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// The flag naming the file.
pub const FLAG: &str = "--config-file";
/// The environment variable naming the file.
pub const ENV: &str = "ANOMALY_CONFIG_FILE";

/// Returns `args` with the file's settings for the chosen subcommand added as flags, except those
/// already given on the command line or through their environment variable. `command` is the
/// clap definition, used to find subcommands, flags and their variables.
pub fn apply(args: Vec<OsString>, command: &clap::Command) -> anyhow::Result<Vec<OsString>> {
    let (mut args, path) = take_path(args)?;
    let Some(path) = path.or_else(|| std::env::var_os(ENV).map(PathBuf::from)) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let Some((position, sub)) = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| command.find_subcommand(a.to_str()?).map(|s| (i, s)))
    else {
        return Ok(args);
    };
    let Some(settings) = table.get(sub.get_name()) else {
        return Ok(args);
    };
    let settings = settings
        .as_table()
        .with_context(|| format!("{}: [{}] must be a table", path.display(), sub.get_name()))?;
    let mut added = Vec::new();
    for (key, value) in settings {
        let Some(arg) = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            bail!(
                "{}: `anomaly {}` has no flag --{key}",
                path.display(),
                sub.get_name()
            );
        };
        let flag = format!("--{key}");
        let given = args[position..].iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        });
        let from_env = arg
            .get_env()
            .is_some_and(|var| std::env::var_os(var).is_some());
        if given || from_env {
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!("{}: --{key} cannot take {other}", path.display()),
        };
        if arg.get_action().takes_values() {
            added.push(OsString::from(format!("{flag}={text}")));
        } else if text == "true" {
            added.push(OsString::from(flag));
        }
    }
    args.splice(position + 1..position + 1, added);
    Ok(args)
}

/// Removes `--config-file PATH` / `--config-file=PATH` from `args` and returns the path.
fn take_path(args: Vec<OsString>) -> anyhow::Result<(Vec<OsString>, Option<PathBuf>)> {
    let mut rest = Vec::with_capacity(args.len());
    let mut path = None;
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        match arg.to_str() {
            Some(FLAG) => {
                path = Some(PathBuf::from(
                    iter.next()
                        .with_context(|| format!("{FLAG} needs a path"))?,
                ))
            }
            Some(a) if a.starts_with(&format!("{FLAG}=")) => {
                path = Some(PathBuf::from(&a[FLAG.len() + 1..]))
            }
            _ => rest.push(arg),
        }
    }
    Ok((rest, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cli() -> Command {
        Command::new("anomaly").subcommand(
            Command::new("detect")
                .arg(
                    Arg::new("brokers")
                        .long("brokers")
                        .env("ANOMALY_TEST_CONFIG_BROKERS"),
                )
                .arg(Arg::new("group").long("group"))
                .arg(
                    Arg::new("synthetic")
                        .long("synthetic")
                        .action(ArgAction::SetTrue),
                )
                .arg(Arg::new("count").long("count")),
        )
    }

    fn run(file: &str, args: &[&str]) -> anyhow::Result<Vec<String>> {
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("anomaly-config-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, file).unwrap();
        let mut full: Vec<OsString> = args.iter().map(OsString::from).collect();
        full.push(format!("{FLAG}={}", path.display()).into());
        let out = apply(full, &cli());
        std::fs::remove_file(&path).unwrap();
        Ok(out?.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn file_settings_fill_in_flags_the_command_line_did_not_give() {
        let args = run(
            "[detect]\ngroup = \"g1\"\ncount = 5\nsynthetic = true\n",
            &["anomaly", "detect"],
        )
        .unwrap();
        assert_eq!(
            args,
            [
                "anomaly",
                "detect",
                "--count=5",
                "--group=g1",
                "--synthetic"
            ]
        );
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let args = run(
            "[detect]\ngroup = \"g1\"\n",
            &["anomaly", "detect", "--group", "cli"],
        )
        .unwrap();
        assert_eq!(args, ["anomaly", "detect", "--group", "cli"]);
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let err = run("[detect]\nbrokerz = \"x\"\n", &["anomaly", "detect"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--brokerz"), "{err}");
    }

    #[test]
    fn other_subcommands_tables_are_left_alone() {
        let args = run("[collect]\ninterval = \"2s\"\n", &["anomaly", "detect"]).unwrap();
        assert_eq!(args, ["anomaly", "detect"]);
    }
}
