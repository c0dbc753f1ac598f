//! `locksmith`: the operator's command.

mod pki;

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
    }
}
