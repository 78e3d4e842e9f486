//! Log output: readable text (default) or one JSON object per line, on stderr and/or in a
//! file rotated daily with bounded retention.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tracing::Level;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

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
        layers.push(layer(opts.format, std::io::stderr));
    }
    if let Some(path) = &opts.file {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let prefix = path
            .file_name()
            .context("--log-file needs a file name")?
            .to_string_lossy()
            .into_owned();
        let appender = tracing_appender::rolling::RollingFileAppender::builder()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix(prefix)
            .max_log_files(opts.keep.max(1))
            .build(&dir)
            .with_context(|| format!("cannot open log file in {}", dir.display()))?;
        layers.push(layer(opts.format, appender));
    }
    tracing_subscriber::registry()
        .with(layers.with_filter(LevelFilter::from_level(level)))
        .try_init()
        .context("cannot set up logging")?;
    Ok(())
}

fn layer<W>(format: LogFormat, writer: W) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(false);
    match format {
        LogFormat::Text => base.boxed(),
        LogFormat::Json => base.json().flatten_event(true).boxed(),
    }
}
