//! Consumer commands of the `sluis` binary: `sluis query` (SQL against a provider's Flight
//! endpoint with a transfer's token) and `sluis token attenuate` (narrow a token offline).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::record_batch::RecordBatch;
use arrow_flight::Ticket;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sluis_policy::token::{Attenuation, TokenVerifier, attenuate};

use crate::dataplane::PURPOSE_HEADER;
use crate::flight_client;

/// `sluis query`: run SQL on a provider's data plane.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The Flight endpoint of the transfer's DataAddress (`grpc+tls://host:port`).
    #[arg(long)]
    pub endpoint: String,
    /// The data-space CA certificate (PEM) the provider's certificate is checked against.
    #[arg(long)]
    pub ca: PathBuf,
    /// The transfer's token (the DataAddress's `authorization` property).
    #[arg(long, env = "SLUIS_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The client certificate (PEM) of the participant the token belongs to: tokens are bound
    /// to their holder (the consumer's `tls.cert`, or a delegate's).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of `--cert`.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// The purpose of the query, if the agreement asks for one (an IRI such as
    /// `https://w3id.org/dpv#ResearchAndDevelopment`).
    #[arg(long)]
    pub purpose: Option<String>,
    /// The SQL; empty for the whole table.
    #[arg(long, default_value = "")]
    pub sql: String,
    /// Write the result to this file (`.parquet` or `.csv`) instead of printing a table.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Rows printed when no `--out` is given.
    #[arg(long, default_value_t = 20)]
    pub max_rows: usize,
}

/// `sluis token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Narrow a token offline: an earlier expiry and/or fewer columns. Nothing can widen a
    /// token: each restriction is a new Biscuit block that the data plane checks in addition
    /// to everything before it.
    Attenuate {
        /// The token to narrow.
        #[arg(long, env = "SLUIS_TOKEN", hide_env_values = true)]
        token: String,
        /// The provider's token public key (the DataAddress's `tokenPublicKey` property).
        #[arg(long)]
        public_key: String,
        /// Expire this long from now, e.g. `30m`, `2h`, `1d`.
        #[arg(long, conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Expire at this instant (RFC 3339).
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
        /// Only these columns may be read (comma separated).
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
    },
    /// Pass a token on to another participant: an explicit act of its holder, proved with the
    /// holder's certificate key. Afterwards the token works only from the delegate's client
    /// certificate.
    Delegate {
        /// The token to delegate.
        #[arg(long, env = "SLUIS_TOKEN", hide_env_values = true)]
        token: String,
        /// The provider's token public key (the DataAddress's `tokenPublicKey` property).
        #[arg(long)]
        public_key: String,
        /// The delegate's participant id (the URI SAN of its certificate).
        #[arg(long)]
        to: String,
        /// The data-space CA (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// The holder's certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// The holder's private key (PEM).
        #[arg(long)]
        key: PathBuf,
    },
}

/// Runs `sluis query`.
pub async fn query(args: QueryArgs) -> Result<()> {
    let ca = std::fs::read(&args.ca)
        .with_context(|| format!("reading the CA certificate {}", args.ca.display()))?;
    let cert = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some(flight_client::ClientCert::load(cert, key)?),
        _ => None,
    };
    let mut client =
        flight_client::connect(&args.endpoint, &ca, cert.as_ref(), &args.token).await?;
    if let Some(purpose) = &args.purpose {
        client
            .add_header(PURPOSE_HEADER, purpose)
            .context("the purpose is not a valid header value")?;
    }
    let stream = client
        .do_get(Ticket::new(args.sql.clone()))
        .await
        .map_err(|e| anyhow::anyhow!(flight_client::flight_message(&e)))
        .context("the provider refused the query")?;
    let mut progress = Progress::new();
    let batches: Vec<RecordBatch> = stream
        .inspect_ok(|b| progress.add(b))
        .try_collect()
        .await
        .map_err(|e| anyhow::anyhow!(flight_client::flight_message(&e)))
        .context("the provider refused or stopped the query")?;
    progress.done();
    match &args.out {
        Some(path) => write_file(path, &batches),
        None => print_table(&batches, args.max_rows),
    }
}

/// Shows rows and bytes received on stderr while a result streams in (only on a terminal).
struct Progress {
    started: Instant,
    last: Instant,
    rows: usize,
    bytes: usize,
    shown: bool,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            rows: 0,
            bytes: 0,
            shown: false,
        }
    }

    fn add(&mut self, batch: &RecordBatch) {
        self.rows += batch.num_rows();
        self.bytes += batch.get_array_memory_size();
        if self.last.elapsed() >= Duration::from_millis(200) && std::io::stderr().is_terminal() {
            self.last = Instant::now();
            self.shown = true;
            eprint!("\r{}", self.line());
            let _ = std::io::stderr().flush();
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{} rows, {:.1} MB in {:.1} s ({:.0} rows/s)",
            self.rows,
            self.bytes as f64 / 1e6,
            secs,
            self.rows as f64 / secs
        )
    }

    fn done(&self) {
        if self.shown {
            eprintln!("\r{}", self.line());
        }
    }
}

fn write_file(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .context("the result has no batches, so no schema to write")?;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => {
            let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
        Some("csv") => {
            let mut w = arrow::csv::Writer::new(file);
            for b in batches {
                w.write(b)?;
            }
        }
        _ => bail!("{}: write to a .parquet or .csv file", path.display()),
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    println!("wrote {rows} rows to {}", path.display());
    Ok(())
}

fn print_table(batches: &[RecordBatch], max_rows: usize) -> Result<()> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut shown = Vec::new();
    let mut left = max_rows;
    for b in batches {
        if left == 0 {
            break;
        }
        let take = left.min(b.num_rows());
        shown.push(b.slice(0, take));
        left -= take;
    }
    println!("{}", arrow::util::pretty::pretty_format_batches(&shown)?);
    println!("{rows} rows");
    Ok(())
}

/// Runs `sluis token ...`; prints the new token on stdout.
pub fn token(command: TokenCommand) -> Result<()> {
    let (token, public_key, expires_in, expires_at, columns) = match command {
        TokenCommand::Attenuate {
            token,
            public_key,
            expires_in,
            expires_at,
            columns,
        } => (token, public_key, expires_in, expires_at, columns),
        TokenCommand::Delegate {
            token,
            public_key,
            to,
            ca,
            cert,
            key,
        } => {
            let tls = crate::tls::TlsMaterial::load(&crate::tls::TlsFiles { ca, cert, key })?;
            println!(
                "{}",
                crate::holder::delegate(&token, &public_key, &to, &tls)?
            );
            return Ok(());
        }
    };
    let expires_at = match (expires_in, expires_at) {
        (Some(d), _) => Some(Utc::now() + parse_duration(&d)?),
        (None, at) => at,
    };
    println!(
        "{}",
        narrow_token(&token, &public_key, expires_at, columns)?
    );
    Ok(())
}

/// Attenuates `token`: refuses an expiry later than the token's own (it could not widen the
/// token, but asking for it is a mistake worth saying) and an empty restriction.
pub fn narrow_token(
    token: &str,
    public_key: &str,
    expires_at: Option<DateTime<Utc>>,
    columns: Option<Vec<String>>,
) -> Result<String> {
    if expires_at.is_none() && columns.is_none() {
        bail!("nothing to narrow: pass --expires-in, --expires-at and/or --columns");
    }
    let verifier = TokenVerifier::from_public_key_hex(public_key)
        .map_err(|e| anyhow::anyhow!("the public key: {e}"))?;
    let grant = verifier
        .inspect(token)
        .map_err(|e| anyhow::anyhow!("the token does not verify with this public key: {e}"))?;
    if let Some(at) = expires_at
        && at > grant.expires_at
    {
        bail!(
            "cannot widen a token: it expires at {}, and {} is later; choose an earlier expiry",
            grant.expires_at.to_rfc3339(),
            at.to_rfc3339()
        );
    }
    if columns.as_ref().is_some_and(Vec::is_empty) {
        bail!("--columns needs at least one column");
    }
    attenuate(
        token,
        public_key,
        &Attenuation {
            expires_at,
            columns,
        },
    )
    .map_err(|e| anyhow::anyhow!("attenuating the token: {e}"))
}

/// `90s`, `30m`, `2h`, `1d`.
fn parse_duration(text: &str) -> Result<chrono::Duration> {
    let text = text.trim();
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a duration like 90s, 30m, 2h or 1d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("`{text}` is not a duration like 90s, 30m, 2h or 1d"),
    };
    if n <= 0 {
        bail!("the duration must be positive");
    }
    Ok(chrono::Duration::seconds(n.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluis_policy::token::{Grant, TokenIssuer};

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap().num_seconds(), 90);
        assert_eq!(parse_duration("2h").unwrap().num_seconds(), 7200);
        assert!(parse_duration("2w").is_err());
        assert!(parse_duration("-1m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_later_expiry_is_refused() {
        let issuer = TokenIssuer::generate();
        let grant = Grant {
            agreement_id: "a".into(),
            transfer_id: "t".into(),
            dataset_id: "d".into(),
            consumer: "c".into(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
        };
        let token = issuer.mint(&grant).unwrap();
        let key = issuer.public_key_hex();
        let later = Some(Utc::now() + chrono::Duration::hours(2));
        let e = narrow_token(&token, &key, later, None).unwrap_err();
        assert!(e.to_string().contains("cannot widen"), "{e}");
        let earlier = Some(Utc::now() + chrono::Duration::minutes(5));
        let narrowed = narrow_token(&token, &key, earlier, Some(vec!["region".into()])).unwrap();
        assert_ne!(narrowed, token);
        assert!(narrow_token(&token, &key, None, None).is_err());
        let other = TokenIssuer::generate().public_key_hex();
        assert!(narrow_token(&token, &other, earlier, None).is_err());
    }
}
