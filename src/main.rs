use clap::{Parser, Subcommand};
use llmgate::config::{self, Config, ConfigError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Exit code for a configuration the operator must fix (sysexits EX_CONFIG).
const EX_CONFIG: u8 = 78;
/// Exit code for a command line the operator must fix (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "llmgate",
    version,
    about = "Streaming reverse proxy for Open WebUI, Ollama and OpenAI-compatible relays"
)]
struct Cli {
    /// Config file [default: config/llmgate.toml, or the built-in default if that file is absent]
    #[arg(long, global = true, env = "LLMGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the config file and exit: 0 when it is valid.
    Check,
    /// GET URL once; exit 0 on a 2xx answer, 1 otherwise. The container health check: it
    /// needs no shell or curl and does not read the config.
    Probe {
        /// Plain-HTTP URL, e.g. http://127.0.0.1:9100/readyz
        url: String,
        /// Deadline for connecting, sending and reading the status line, together.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::Probe { url, timeout } = &command {
        return probe(url, *timeout);
    }
    let config = match load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llmgate: invalid configuration\n{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if matches!(command, Command::Check) {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    run(config)
}

fn probe(url: &str, timeout: Duration) -> ExitCode {
    use llmgate::probe::ProbeError;
    match llmgate::probe::probe(url, timeout) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ ProbeError::Usage(_)) => {
            eprintln!("llmgate probe: {e}");
            ExitCode::from(EX_USAGE)
        }
        Err(e) => {
            eprintln!("llmgate probe: {url} {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => config::load(p),
        None if Path::new(config::DEFAULT_PATH).exists() => {
            config::load(Path::new(config::DEFAULT_PATH))
        }
        None => config::parse(
            "(built-in default config)",
            config::EMBEDDED_DEFAULT,
            &|v| std::env::var(v).ok(),
        ),
    }
}

fn run(config: Config) -> ExitCode {
    llmgate::logging::init(&config.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("llmgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let server = match llmgate::Server::bind(&config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        if config.upstreams.is_empty() {
            tracing::warn!("no upstreams configured");
        }
        tracing::info!(
            listen = %server.proxy_addr(),
            admin = %server.admin_addr(),
            version = env!("CARGO_PKG_VERSION"),
            "llmgate listening"
        );
        let report = server.run(shutdown_signal()).await;
        tracing::info!(cut = report.cut, "llmgate stopped");
        ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop llmgate with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
