//! The log panel's source: a tracing layer that keeps the latest lines in
//! memory (bounded), beside a log file in the data folder.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Lines kept for the panel.
pub const MAX_LINES: usize = 5000;
/// The log file's size before it is moved to `lanspread.log.1` (replacing
/// the one before) and a new one begins: two files at most.
pub const MAX_LOG_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A log file that rotates once it reaches a size: appended to, never
/// truncated on start; at [`MAX_LOG_FILE_BYTES`] it becomes
/// `<name>.1` and a new file begins.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    limit: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, limit: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            written,
            limit,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        // Windows cannot rename over an existing file.
        let _ = std::fs::remove_file(&old);
        std::fs::rename(&self.path, &old)?;
        *self = Self::open(&self.path, self.limit)?;
        Ok(())
    }
}

impl std::io::Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written >= self.limit {
            // A failed rotation keeps writing to the same file.
            let _ = self.rotate();
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// One logged event.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub level: Level,
    pub text: String,
}

/// The lines since start, shared with the panel. The mutex guards the
/// deque only, for a push or a copy.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer {
    lines: Arc<Mutex<VecDeque<LogLine>>>,
    pub file: Option<PathBuf>,
}

impl LogBuffer {
    pub fn push(&self, line: LogLine) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == MAX_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The lines at `level` or more severe, oldest first.
    pub fn lines_at_least(&self, level: Level) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().filter(|l| l.level <= level).cloned().collect()
    }
}

/// Collects an event's fields into one line of text.
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

struct PanelLayer(LogBuffer);

impl<S: tracing::Subscriber> Layer<S> for PanelLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() % 86_400)
            .unwrap_or(0);
        self.0.push(LogLine {
            level: *meta.level(),
            text: format!(
                "{:02}:{:02}:{:02} {:5} {}: {}",
                time / 3600,
                time / 60 % 60,
                time % 60,
                meta.level(),
                meta.target(),
                fields.0
            ),
        });
    }
}

/// Logs to stderr, to `lanspread.log` in the data folder, and to the panel.
pub fn init(data_dir: &Path) -> LogBuffer {
    let file_path = data_dir.join("lanspread.log");
    let mut buffer = LogBuffer::default();
    let file = std::fs::create_dir_all(data_dir)
        .and_then(|()| RotatingFile::open(&file_path, MAX_LOG_FILE_BYTES))
        .ok();
    if file.is_some() {
        buffer.file = Some(file_path);
    }
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let file_layer = file.map(|file| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(PanelLayer(buffer.clone()).with_filter(filter()))
        .with(file_layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter()),
        )
        .try_init();
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_is_appended_to_and_rotates_at_its_limit() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lanspread.log");
        std::fs::write(&path, "from the last run\n").unwrap();
        let mut log = RotatingFile::open(&path, 100).unwrap();
        log.write_all(&[b'a'; 90]).unwrap();
        // Past the limit: the next write goes to a new file.
        log.write_all(b"new\n").unwrap();
        let kept = std::fs::read_to_string(dir.path().join("lanspread.log.1")).unwrap();
        assert!(
            kept.starts_with("from the last run"),
            "appended, not truncated"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        // Again: two files at most.
        log.write_all(&[b'b'; 100]).unwrap();
        log.write_all(b"newer\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "newer\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn the_buffer_is_bounded_and_filters_by_level() {
        let buffer = LogBuffer::default();
        for i in 0..MAX_LINES + 10 {
            let level = if i % 2 == 0 { Level::INFO } else { Level::WARN };
            buffer.push(LogLine {
                level,
                text: i.to_string(),
            });
        }
        assert_eq!(buffer.lines_at_least(Level::TRACE).len(), MAX_LINES);
        assert_eq!(buffer.lines_at_least(Level::WARN).len(), MAX_LINES / 2);
        assert_eq!(buffer.lines_at_least(Level::TRACE)[0].text, "10");
    }
}
