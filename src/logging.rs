//! `--log.level` and `--log.format=logfmt|json`. logfmt is written by a small formatter so
//! lines are `ts=… level=… msg="…" key=value`, as Prometheus' own Go exporters log.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Installs the global subscriber. Logs go to stderr.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    // Other crates, the demo's simulator (`apitoken_sim`) among them, log at `warn`.
    let filter = EnvFilter::try_new(format!("warn,apitoken_exporter={level}"))
        .map_err(|e| format!("invalid --log.level {level:?}: {e}"))?;
    if !matches!(level, "trace" | "debug" | "info" | "warn" | "error") {
        return Err(format!(
            "invalid --log.level {level:?}: use one of debug, info, warn, error"
        ));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).try_init(),
    };
    result.map_err(|e| format!("cannot install logger: {e}"))
}

struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        write!(
            writer,
            "ts={ts} level={} target={}",
            meta.level().as_str().to_ascii_lowercase(),
            meta.target()
        )?;
        let mut visitor = LogfmtVisitor {
            msg: None,
            fields: String::new(),
        };
        event.record(&mut visitor);
        if let Some(msg) = visitor.msg {
            write!(writer, " msg={}", quote(&msg))?;
        }
        writeln!(writer, "{}", visitor.fields)
    }
}

struct LogfmtVisitor {
    msg: Option<String>,
    fields: String,
}

impl Visit for LogfmtVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = Some(value.to_string());
        } else {
            self.fields
                .push_str(&format!(" {}={}", field.name(), quote(value)));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Quotes a logfmt value when it needs it.
fn quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && c != '"' && c != '=' && c != '\\' && !c.is_control());
    if plain {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn logfmt_quoting() {
        assert_eq!(quote("jira"), "jira");
        assert_eq!(quote("token is valid"), "\"token is valid\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote(""), "\"\"");
    }
}
