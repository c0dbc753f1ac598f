//! `locksmith`: the operator's command.

use locksmith_cli::{api_key, keys, migrate_cmd, pki};

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Locksmith administration.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The suite's certificate authority and certificates.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// API keys for the HTTP edge.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Tenants' data keys in the credential store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Move configuration into the credential store.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Start a new key version: new writes use it at once, and the store
    /// re-encrypts older values in the background (each rewrite is a new
    /// secret version). Prints the new key version.
    Rotate {
        /// The credential store's gRPC address.
        #[arg(long, default_value = "https://127.0.0.1:7102")]
        credstore: String,
        /// Where the PKI lives (the `cli` certificate is used).
        #[arg(long, default_value = "var/pki")]
        pki: PathBuf,
        /// The tenant whose key to rotate.
        #[arg(long, conflicts_with = "system", required_unless_present = "system")]
        tenant: Option<String>,
        /// Rotate the system scope's key instead.
        #[arg(long)]
        system: bool,
    },
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Seed 000's environment variables (JWT_SECRET, SMTP_*, AWS_*…) into
    /// system secrets. Prints the plan (never a value) and a summary;
    /// re-running changes nothing; a different stored value is kept unless
    /// --force.
    Env {
        /// The credential store's gRPC address.
        #[arg(long, default_value = "https://127.0.0.1:7102")]
        credstore: String,
        /// Where the PKI lives (the `cli` certificate is used).
        #[arg(long, default_value = "var/pki")]
        pki: PathBuf,
        /// Read a `.env` file instead of the process environment.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print the plan, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace stored values that differ.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key and print it (once) on standard output.
    Create {
        /// The registry's gRPC address.
        #[arg(long, default_value = "https://127.0.0.1:7101")]
        registry: String,
        /// Where the PKI lives (the `cli` certificate is used).
        #[arg(long, default_value = "var/pki")]
        pki: PathBuf,
        /// An operator key: every tenant and the admin routes.
        #[arg(long, conflicts_with_all = ["tenant", "role"], required_unless_present = "tenant")]
        operator: bool,
        /// A key confined to this tenant.
        #[arg(long, requires = "role")]
        tenant: Option<String>,
        /// The tenant key's roles (read, write, admin); repeat or separate with commas.
        #[arg(long, value_delimiter = ',')]
        role: Vec<String>,
        /// A name for people.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create the dev CA and one certificate per service (usable existing files are kept).
    Init {
        /// Where the PKI lives.
        #[arg(long, default_value = "var/pki")]
        dir: PathBuf,
        /// Reissue every service certificate (the CA is kept).
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate for a tenant's own workload (spiffe://locksmith/tenant/T/workload/NAME).
    Issue {
        /// Where the PKI lives.
        #[arg(long, default_value = "var/pki")]
        dir: PathBuf,
        /// The tenant the workload is confined to.
        #[arg(long)]
        tenant: String,
        /// The workload's name.
        #[arg(long)]
        workload: String,
    },
}

fn main() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match Cli::parse().command {
        Command::Pki {
            command: PkiCommand::Init { dir, force },
        } => pki::init(&dir, force, &mut out),
        Command::Pki {
            command:
                PkiCommand::Issue {
                    dir,
                    tenant,
                    workload,
                },
        } => pki::issue(&dir, &tenant, &workload, &mut out),
        Command::ApiKey {
            command:
                ApiKeyCommand::Create {
                    registry,
                    pki,
                    operator: _,
                    tenant,
                    role,
                    name,
                },
        } => {
            let owner = match tenant {
                Some(tenant) => api_key::Owner::Tenant {
                    tenant,
                    roles: role,
                },
                None => api_key::Owner::Operator,
            };
            locksmith_tls::install_crypto_provider();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(api_key::create(&registry, &pki, owner, &name, &mut out))
        }
        Command::Keys {
            command:
                KeysCommand::Rotate {
                    credstore,
                    pki,
                    tenant,
                    system: _,
                },
        } => {
            // clap requires exactly one of --tenant and --system.
            let owner = match &tenant {
                Some(tenant) => keys::Owner::Tenant(tenant),
                None => keys::Owner::System,
            };
            locksmith_tls::install_crypto_provider();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(keys::rotate(&credstore, &pki, owner, &mut out))
        }
        Command::Migrate {
            command:
                MigrateCommand::Env {
                    credstore,
                    pki,
                    file,
                    dry_run,
                    force,
                },
        } => {
            let source = match &file {
                Some(path) => migrate_cmd::Source::File(path),
                None => migrate_cmd::Source::Environment,
            };
            locksmith_tls::install_crypto_provider();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(migrate_cmd::run(
                    &credstore, &pki, source, dry_run, force, &mut out,
                ))
        }
    }
}
