//! Log output: readable text (default) or one JSON object per line, on stderr and/or in a
//! file rotated daily with bounded retention.
//!
//! The file is `PREFIX.YYYY-MM-DD` (UTC), a new one each day; the oldest beyond `keep` are
//! deleted. When the file is moved or deleted while protector runs (logrotate, an operator
//! cleaning up), protector notices within a second and starts a new file under the same
//! name, so no log goes into a file nobody can find.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tracing::Level;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

mod daily;
use daily::DailyFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Counts -v (positive) and -q (negative) around the default, info.
    pub verbosity: i8,
    pub format: LogFormat,
    /// Also (or only, with `stderr: false`) log to this file, rotated daily.
    pub file: Option<PathBuf>,
    /// How many daily files to keep.
    pub keep: usize,
    pub stderr: bool,
    /// Also write info and above to the Windows Event Log under this source (Windows only).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub event_log: Option<String>,
}

pub fn init(opts: &LogOptions) -> Result<()> {
    let level = match opts.verbosity {
        i8::MIN..=-2 => Level::ERROR,
        -1 => Level::WARN,
        0 => Level::INFO,
        1 => Level::DEBUG,
        _ => Level::TRACE,
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    if opts.stderr {
        let journal = stderr_is_journal();
        layers.push(layer(opts.format, journal, std::io::stderr));
    }
    if let Some(path) = &opts.file {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        if crate::perms::enforced()
            && let Some(reason) = crate::perms::exposure(&dir)
        {
            anyhow::bail!(crate::perms::refusal(&reason));
        }
        let prefix = path
            .file_name()
            .context("--log-file needs a file name")?
            .to_string_lossy()
            .into_owned();
        let appender = DailyFile::open(dir, prefix, opts.keep.max(1))?;
        layers.push(layer(opts.format, false, appender));
    }
    #[cfg(windows)]
    if let Some(source) = &opts.event_log {
        let log = crate::platform::EventLog::open(source)
            .with_context(|| format!("cannot open the Event Log as {source}"))?;
        // The Event Log keeps the time and the level itself; debug is for a log file.
        let text = tracing_subscriber::fmt::format()
            .with_target(false)
            .with_ansi(false)
            .without_time()
            .with_level(false);
        let records = tracing_subscriber::fmt::layer()
            .with_writer(log)
            .event_format(text)
            .fmt_fields(text_fields())
            .with_filter(LevelFilter::INFO);
        layers.push(records.boxed());
    }
    tracing_subscriber::registry()
        .with(layers.with_filter(LevelFilter::from_level(level)))
        .try_init()
        .context("cannot set up logging")?;
    Ok(())
}

/// A formatting layer writing to `writer`. For the journal (`journal`), each record begins
/// with its syslog priority (`<3>` error .. `<7>` debug, which journald takes as the record's
/// PRIORITY, so `journalctl -p warning` works) and text records carry no timestamp of their
/// own (the journal has it).
fn layer<W>(format: LogFormat, journal: bool, writer: W) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(false);
    let text = tracing_subscriber::fmt::format()
        .with_target(false)
        .with_ansi(false);
    match (format, journal) {
        (LogFormat::Text, false) => base.event_format(text).fmt_fields(text_fields()).boxed(),
        (LogFormat::Text, true) => base
            .event_format(Priority {
                level: true,
                inner: text.without_time().with_level(false),
            })
            .fmt_fields(text_fields())
            .boxed(),
        (LogFormat::Json, false) => base.json().flatten_event(true).boxed(),
        (LogFormat::Json, true) => base
            .event_format(Priority {
                level: false,
                inner: text.json().flatten_event(true),
            })
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .boxed(),
    }
}

/// Every value escaped (JSON escapes by itself): a path, an error or a command's output with a
/// line break or a terminal escape cannot forge a log line.
fn text_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = crate::text::clean(&text);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{field}={text}")
        }
    })
    .delimited(" ")
}

/// An event format that begins each record with its syslog priority, `<N>`, as journald
/// reads it from a service's standard error (sd-daemon(3)), then (`level`) the level's name
/// unpadded, so the journal's message begins with it.
struct Priority<F> {
    level: bool,
    inner: F,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Priority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        write!(writer, "<{}>", syslog_priority(level))?;
        if self.level {
            write!(writer, "{level} ")?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Is standard error the journal? systemd sets JOURNAL_STREAM to the device and inode of the
/// stream it connected a service's output to (systemd.exec(5)); a shell or a redirection
/// started from that service has another stream, so the variable alone is not enough.
fn stderr_is_journal() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let Ok(var) = std::env::var("JOURNAL_STREAM") else {
            return false;
        };
        let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return false;
        };
        let Ok(meta) = std::fs::File::from(fd).metadata() else {
            return false;
        };
        names_stream(&var, meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Does JOURNAL_STREAM's `DEVICE:INODE` name this stream?
#[cfg(unix)]
fn names_stream(var: &str, dev: u64, ino: u64) -> bool {
    var.split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    #[cfg(unix)]
    #[test]
    fn journal_stream_must_name_this_very_stream() {
        assert!(names_stream("8:1234", 8, 1234));
        assert!(!names_stream("8:1234", 8, 1235));
        assert!(!names_stream("8:1234", 9, 1234));
        assert!(!names_stream("", 8, 1234));
        assert!(!names_stream("8", 8, 1234));
        assert!(!names_stream("8:x", 8, 1234));
    }

    #[test]
    fn journal_records_begin_with_their_priority_and_carry_no_timestamp() {
        use tracing_subscriber::layer::SubscriberExt;
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for (format, journal) in [
            (LogFormat::Text, true),
            (LogFormat::Json, true),
            (LogFormat::Text, false),
        ] {
            let buf = Buf::default();
            let out = buf.clone();
            let subscriber =
                tracing_subscriber::registry().with(layer(format, journal, move || out.clone()));
            tracing::subscriber::with_default(subscriber, || {
                tracing::error!(event = "e", "bad\nline");
                tracing::warn!(target_name = "a", event = "w", "careful");
                tracing::info!(event = "i", "fine");
                tracing::debug!(event = "d", "detail");
            });
            let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 4, "one line a record: {text}");
            if !journal {
                assert!(
                    lines[0].starts_with(|c: char| c.is_ascii_digit()),
                    "a timestamp: {text}"
                );
                continue;
            }
            for (line, prio) in lines.iter().zip(["<3>", "<4>", "<6>", "<7>"]) {
                assert!(line.starts_with(prio), "{format:?}: {line}");
            }
            match format {
                LogFormat::Text => {
                    assert!(
                        lines[0].starts_with("<3>ERROR bad\\nline event=\"e\""),
                        "{}",
                        lines[0]
                    );
                    assert!(lines[1].contains("target_name=\"a\""), "{}", lines[1]);
                }
                LogFormat::Json => {
                    let v: serde_json::Value = serde_json::from_str(&lines[1][3..]).unwrap();
                    assert_eq!(v["event"], "w");
                    assert_eq!(v["level"], "WARN");
                }
            }
        }
    }
}
