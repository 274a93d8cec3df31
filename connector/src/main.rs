//! `sluis`: the Sluis data-space connector.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluis_connector::config::{Config, LogFormat, default_config_with_fresh_key};
use sluis_connector::dataplane::DataPlaneConfig;
use sluis_connector::{bench, bench_flight, cli, consumer_cli, demo, run, sample, tls};

/// mimalloc rather than glibc's malloc: the data plane allocates and frees multi-MB buffers
/// (Parquet column chunks, Arrow batches) per query; with mimalloc an open Flight scan took
/// 0.91-0.95 s against 0.97-1.07 s, and a first batch 0.3-1 ms less (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluis",
    version,
    about = "Sluis: a sovereign data-space connector (DSP 2025-1, ODRL, Arrow Flight)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the connector.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "sluis.toml", env = "SLUIS_CONFIG")]
        config: PathBuf,
    },
    /// Run a provider and a consumer on this machine: catalogue, negotiation, and a
    /// policy-enforced Arrow Flight query.
    Demo {
        /// Rows of sample data.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Keep everything in this folder instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List a peer's catalogue (the federated catalogue, or live from a DSP URL) through the
    /// local connector's management API.
    Catalog(sluis_connector::cli_catalog::CatalogArgs),
    /// Measure negotiation and transfer latency and throughput between two local
    /// connectors (build with --release; see BENCHMARKS.md).
    #[command(hide = true)]
    Bench {
        /// Negotiations and transfers run one after another (latency).
        #[arg(long, default_value_t = 200)]
        sequential: usize,
        /// Negotiations and transfers run by the concurrent workers (throughput).
        #[arg(long, default_value_t = 2_000)]
        total: usize,
        /// Concurrent workers.
        #[arg(long, default_value_t = 64)]
        workers: usize,
        /// Keep the connectors' files and logs in this folder.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Log filter of the two connectors.
        #[arg(long, default_value = "warn")]
        log: String,
    },
    /// Write a commented default configuration.
    Init {
        /// Where to write it.
        #[arg(long, short, default_value = "sluis.toml")]
        out: PathBuf,
    },
    /// Negotiate an offer with a provider through the running connector (management API) and
    /// print the agreement once FINALIZED.
    Negotiate {
        #[command(flatten)]
        local: Local,
        /// The provider's dataset.
        #[arg(long)]
        dataset: String,
        /// The offer's `@id` in the provider's catalogue.
        #[arg(long)]
        offer: String,
        /// The provider's participant id (its certificate must carry it).
        #[arg(long)]
        provider: String,
        /// The provider's DSP base URL.
        #[arg(long)]
        address: String,
    },
    /// Request a transfer under an agreement and print the transfer with its DataAddress
    /// (endpoint and token) once STARTED.
    Transfer {
        #[command(flatten)]
        local: Local,
        /// The agreement id.
        #[arg(long)]
        agreement: String,
        /// `ArrowFlight-PULL` or `HttpData-PULL`.
        #[arg(long, default_value = "ArrowFlight-PULL")]
        format: String,
        /// The provider's participant id.
        #[arg(long)]
        provider: String,
        /// The provider's DSP base URL.
        #[arg(long)]
        address: String,
    },
    /// Certificate helpers for a local data space.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Generate the synthetic smart-meter dataset as Parquet.
    Sample {
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
        /// Number of rows.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Run SQL on a provider's data plane with a transfer's token.
    Query(cli::QueryArgs),
    /// Data-plane token helpers.
    #[command(subcommand)]
    Token(cli::TokenCommand),
    /// Benchmark the Flight data plane against pyarrow's Flight server (see BENCHMARKS.md).
    #[command(hide = true)]
    BenchFlight {
        /// Rows of sample data.
        #[arg(long, default_value_t = 10_000_000)]
        rows: usize,
        /// The Parquet file (generated when missing); default `/tmp/sluis-bench-<rows>.parquet`.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Run only these phases (repeatable); default: all.
        #[arg(long = "only", value_enum)]
        only: Vec<bench_flight::Phase>,
        /// Queries timed for the time to first batch.
        #[arg(long, default_value_t = 200)]
        first_batch_runs: usize,
        /// Full reads of each configuration in the throughput phase, taking turns.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// First rows of each view the benchmarked data plane keeps in memory (0: none).
        #[arg(long, default_value_t = DataPlaneConfig::default().prefix_rows)]
        prefix_rows: usize,
        /// Rows per record batch of the benchmarked data plane.
        #[arg(long, default_value_t = DataPlaneConfig::default().batch_size)]
        batch_size: usize,
        /// Throughput configurations to run (repeatable: enforced, "no policy", pyarrow,
        /// filter, mask); default: all, and the ratios between them.
        #[arg(long = "config")]
        configs: Vec<String>,
    },
}

/// Which local connector a consumer command talks to.
#[derive(clap::Args)]
struct Local {
    /// The local connector's configuration (for its API key and ports.json).
    #[arg(long, short, default_value = "sluis.toml", env = "SLUIS_CONFIG")]
    config: PathBuf,
    /// The management URL, instead of the one in `<data_dir>/ports.json`.
    #[arg(long)]
    management_url: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

impl Local {
    fn client(&self) -> Result<sluis_connector::mgmt_client::MgmtClient> {
        consumer_cli::client_for(&self.config, self.management_url.as_deref())
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs)
    }
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a data-space CA (ca.pem, ca-key.pem) in a folder.
    Ca {
        /// Output folder.
        #[arg(long, short)]
        out: PathBuf,
        /// The CA's name.
        #[arg(long, default_value = "Sluis data-space CA")]
        name: String,
    },
    /// Issue a participant certificate (cert.pem, key.pem, ca.pem) signed by a CA folder.
    Issue {
        /// The CA folder made by `sluis certs ca`.
        #[arg(long)]
        ca: PathBuf,
        /// The participant id (an IRI, e.g. did:web:example.org).
        #[arg(long)]
        participant: String,
        /// Host names or IP addresses the connector is reached at.
        #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hosts: Vec<String>,
        /// Output folder.
        #[arg(long, short)]
        out: PathBuf,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Serve { config } => {
            let cfg = Config::load(&config)?;
            init_tracing(cfg.log.format);
            runtime()?.block_on(run::serve(cfg))
        }
        Command::Demo { rows, dir } => {
            if std::env::var_os("RUST_LOG").is_some() {
                init_tracing(LogFormat::Pretty);
            }
            runtime()?.block_on(demo::run(rows, dir))
        }
        Command::Bench {
            sequential,
            total,
            workers,
            dir,
            log,
        } => runtime()?.block_on(bench::run(bench::BenchOptions {
            sequential,
            total,
            workers,
            dir,
            log,
        })),
        Command::Init { out } => {
            if out.exists() {
                anyhow::bail!("{} exists already; remove it or pass --out", out.display());
            }
            // a key of its own: the template's placeholder is refused at start
            tls::write_private(&out, default_config_with_fresh_key()?.as_bytes())?;
            println!(
                "wrote {} with a random management API key ([management] api_key)",
                out.display()
            );
            Ok(())
        }
        Command::Negotiate {
            local,
            dataset,
            offer,
            provider,
            address,
        } => {
            let mgmt = local.client()?;
            let agreement = runtime()?.block_on(consumer_cli::negotiate(
                &mgmt,
                &dataset,
                &offer,
                &provider,
                &address,
                local.timeout(),
            ))?;
            println!("{}", serde_json::to_string_pretty(&agreement)?);
            Ok(())
        }
        Command::Transfer {
            local,
            agreement,
            format,
            provider,
            address,
        } => {
            let mgmt = local.client()?;
            let transfer = runtime()?.block_on(consumer_cli::transfer(
                &mgmt,
                &agreement,
                &format,
                &provider,
                &address,
                local.timeout(),
            ))?;
            println!("{}", serde_json::to_string_pretty(&transfer)?);
            Ok(())
        }
        Command::Catalog(args) => runtime()?.block_on(sluis_connector::cli_catalog::run(args)),
        Command::Certs(c) => certs(c),
        Command::Query(args) => runtime()?.block_on(cli::query(args)),
        Command::Token(c) => cli::token(c),
        Command::BenchFlight {
            rows,
            file,
            only,
            first_batch_runs,
            rounds,
            prefix_rows,
            batch_size,
            configs,
        } => runtime()?.block_on(bench_flight::run(
            rows,
            file,
            &only,
            first_batch_runs,
            rounds,
            DataPlaneConfig {
                prefix_rows,
                batch_size,
                max_concurrent_queries: 64,
                ..Default::default()
            },
            &configs,
        )),
        Command::Sample { out, rows, seed } => {
            let s = sample::generate_meter_readings(&out, rows, seed)?;
            println!(
                "wrote {} rows to {}: {:?}",
                s.rows,
                out.display(),
                s.rows_per_region
            );
            Ok(())
        }
    }
}

fn certs(command: CertsCommand) -> Result<()> {
    match command {
        CertsCommand::Ca { out, name } => {
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let ca = tls::create_ca(&name)?;
            tls::write_file(&out.join("ca.pem"), ca.cert_pem.as_bytes())?;
            tls::write_private(&out.join("ca-key.pem"), ca.key_pem.as_bytes())?;
            println!("wrote {0}/ca.pem and {0}/ca-key.pem", out.display());
            Ok(())
        }
        CertsCommand::Issue {
            ca,
            participant,
            hosts,
            out,
        } => {
            let read = |f: &str| {
                std::fs::read_to_string(ca.join(f)).with_context(|| {
                    format!(
                        "reading {}: create the CA with `sluis certs ca`",
                        ca.join(f).display()
                    )
                })
            };
            let ca = tls::IssuedCert {
                cert_pem: read("ca.pem")?,
                key_pem: read("ca-key.pem")?,
            };
            let cert = tls::issue_participant_cert(&ca, &participant, &hosts)?;
            let files = tls::write_participant_files(&out, &ca, &cert)?;
            println!(
                "wrote {}, {} and {} for {participant}",
                files.cert.display(),
                files.key.display(),
                files.ca.display()
            );
            Ok(())
        }
    }
}
