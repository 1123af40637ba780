//! Command line -> entry points in `app`. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use apitoken_exporter::app::{self, CheckOutput};
use apitoken_exporter::logging::{self, LogFormat};
use apitoken_exporter::webconfig::{self, WebConfig};
use clap::{Parser, Subcommand};

/// jemalloc instead of glibc's malloc. Start-up parses the whole config (at 10,000 tokens
/// ~40 MB of heap at the peak, most of it freed a moment later). glibc keeps those pages
/// resident for good, because long-lived allocations sit between and above them; jemalloc
/// returns them to the OS (at once: see `.cargo/config.toml`). At 10,000 tokens that is
/// ~10 MB less steady RSS. (mimalloc, tried too, kept more than glibc here.) See
/// bench/README.md, "Memory at 10,000 tokens".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "apitoken_exporter",
    version,
    about = "Prometheus exporter for API token validity and expiry (Atlassian, GitHub, GitLab)"
)]
struct Cli {
    /// Configuration file (YAML, see README).
    #[arg(long = "config.file", default_value = "config.yaml", global = true)]
    config_file: PathBuf,
    /// Address to serve /metrics, / and /-/ endpoints on (host:port, [ipv6]:port or :port,
    /// which listens on IPv4 and IPv6); repeat the flag to listen on several.
    #[arg(long = "web.listen-address", default_value = ":9877", global = true)]
    listen_address: Vec<String>,
    /// Web config in the Prometheus exporter-toolkit format: TLS, basic auth, headers, rate
    /// limit; re-read while running.
    #[arg(long = "web.config.file", global = true)]
    web_config_file: Option<PathBuf>,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info", global = true)]
    log_level: String,
    /// Log line format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,
    /// Reload the config whenever its content changes, checked at this interval (e.g. 30s).
    #[arg(long = "config.auto-reload-interval", value_parser = parse_interval)]
    auto_reload_interval: Option<std::time::Duration>,
    /// Validate the config file and its secret sources, print OK or every problem, exit 0/1.
    #[arg(long = "config.check")]
    config_check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Probe every token once and print the result; exit 0 if all valid, 1 if any is not,
    /// 2 on a config error.
    Check {
        #[arg(long = "output", value_enum, default_value = "table")]
        output: CheckOutput,
    },
    /// Run an embedded vendor simulator and the exporter over it, with one token in
    /// every state.
    #[cfg(feature = "demo")]
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.config_check {
        return exit(app::config_check(&cli.config_file));
    }
    if let Err(e) = logging::init(&cli.log_level, cli.log_format) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let web = match &cli.web_config_file {
            Some(path) => webconfig::load(path)?,
            None => WebConfig::default(),
        };
        match cli.command {
            Some(Command::Check { output }) => Ok(app::run_check(&cli.config_file, output).await),
            #[cfg(feature = "demo")]
            Some(Command::Demo) => app::run_demo(&cli.listen_address, &web).await.map(|()| 0),
            None => app::run_exporter(app::ExporterOptions {
                config_file: cli.config_file.clone(),
                listen: cli.listen_address.clone(),
                web,
                auto_reload: cli.auto_reload_interval,
            })
            .await
            .map(|()| 0),
        }
    });
    match result {
        Ok(code) => exit(code),
        Err(e) => {
            tracing::error!(error = e.as_str(), "exiting");
            eprintln!("apitoken_exporter: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = apitoken_exporter::util::parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err("must be at least 1s".to_string());
    }
    Ok(d)
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
