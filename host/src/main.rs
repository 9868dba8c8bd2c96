//! The `sluice` binary: parses the command line and runs the subcommand
//! (each one lives in `cli/`).

mod cli;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command, functions};

// Every request allocates and frees many small buffers on two cores, often
// on another thread than the one that allocated: mimalloc's per-thread free
// lists cost far less there than glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, not a backtrace: this is for operators.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    let config = cli.config()?;
    let json = cli.json;
    let admin = || cli::admin(&cli.admin_url, &cli.key, &config);
    match cli.command {
        Command::CompileComponent {
            fuel,
            max_wasm_stack,
            max_memory_bytes,
        } => sluice_host::runtime::compile_component(fuel, max_wasm_stack, max_memory_bytes)
            .map_err(anyhow::Error::msg),
        Command::Serve(args) => cli::serve::run(config, args).await,
        Command::New(args) => cli::new::run(args),
        Command::Dev(args) => cli::dev::run(config, args).await,
        Command::Token(args) => cli::token::run(&config, args),
        Command::Key(command) => cli::key::run(&config, command, json).await,
        Command::DeadLetters(command) => cli::dead_letters::run(&config, command).await,
        Command::Invocations(args) => cli::invocations::run(&admin()?, args, json).await,
        Command::Secrets(command) => cli::config::secrets(admin(), command, json).await,
        Command::Tenant(command) => cli::tenant::run(&admin()?, command, json).await,
        Command::Deploy(args) => functions::deploy(&admin()?, args, json).await,
        Command::Functions(functions::Command::List { tenant }) => {
            functions::list(&admin()?, tenant.as_deref(), json).await
        }
        Command::Functions(functions::Command::Delete { tenant, name }) => {
            functions::delete(&admin()?, &tenant, &name, json).await
        }
        Command::Versions { tenant, name } => {
            functions::versions(&admin()?, &tenant, &name, json).await
        }
        Command::Rollback { tenant, name, to } => {
            functions::rollback(&admin()?, &tenant, &name, to, json).await
        }
    }
}
