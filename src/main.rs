use clap::{Parser, Subcommand};
use llmgate::auth::keys;
use llmgate::config::{self, Config};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code for a command line the operator must fix (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit code for a configuration the operator must fix (sysexits EX_CONFIG).
const EX_CONFIG: u8 = 78;

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
    /// Validate the config file (and its keys file) and exit: 0 when it is valid.
    Check,
    /// Make or hash llmgate keys.
    #[command(subcommand)]
    Keys(KeysCommand),
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

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key (shown once) and the [[keys]] entry to paste into the keys file.
    New {
        /// Identity name for logs, metrics and limits: letters, digits, '.', '_', '-'.
        #[arg(long)]
        id: String,
    },
    /// Read a key from stdin and print its sha256, as the keys file wants it.
    Hash,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::Probe { url, timeout } = &command {
        return probe(url, *timeout);
    }
    if let Command::Keys(k) = command {
        return keys_command(k);
    }
    let config = match config::load_or_default(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llmgate: invalid configuration\n{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    match command {
        Command::Check => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        _ => run(config, cli.config),
    }
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

fn keys_command(cmd: KeysCommand) -> ExitCode {
    match cmd {
        KeysCommand::New { id } => {
            if !keys::valid_id(&id) {
                eprintln!("llmgate: --id must be 1-64 letters, digits, '.', '_' or '-'");
                return ExitCode::from(2);
            }
            let key = keys::generate();
            println!("key: {key}");
            println!("(shown once: llmgate stores only its hash; hand the key to its user now)\n");
            print!("{}", keys::entry(&id, &key));
        }
        KeysCommand::Hash => {
            let mut input = String::new();
            let _ = std::io::stdin().read_to_string(&mut input);
            let key = input.trim();
            if key.is_empty() {
                eprintln!("llmgate: no key on stdin; try: printf %s \"$KEY\" | llmgate keys hash");
                return ExitCode::FAILURE;
            }
            println!("{}", hex::encode(keys::sha256(key)));
        }
    }
    ExitCode::SUCCESS
}

fn run(config: Config, path: Option<PathBuf>) -> ExitCode {
    llmgate::logging::init(&config.log);
    llmgate::listener::raise_fd_limit(config.server.max_connections);
    // One thread gets the single-threaded runtime: the accept loop and every connection share
    // that thread instead of a parked main thread handing connections to one worker (the same
    // instructions per request; BENCHMARKS.md). More workers than free CPUs cost context
    // switches, hence the key for machines where llmgate gets fewer CPUs than it sees.
    let threads = config.server.threads();
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("llmgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
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
        llmgate::auth::warn_if_open(config.auth.as_ref());
        llmgate::reload::spawn(server.shared(), path, config);
        tracing::info!(
            listen = %server.proxy_addr(),
            admin = %server.admin_addr(),
            threads,
            version = env!("CARGO_PKG_VERSION"),
            "llmgate listening"
        );
        let report = server.run(shutdown_signal()).await;
        llmgate::log_writer::flush();
        tracing::info!(cut = report.cut, "llmgate stopped");
        ExitCode::SUCCESS
    });
    // Streams cut at the drain budget are dropped with the runtime, and log their lines then.
    drop(rt);
    llmgate::log_writer::flush();
    code
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
