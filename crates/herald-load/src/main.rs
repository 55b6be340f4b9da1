//! Entry point of `herald-load`; see the library documentation for the layout.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use herald_load::cli::{Cli, Cmd};
use herald_load::report::{self, RunResult};
use herald_load::{compare, plot, scenario, worker};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::Worker => worker::main().map(|()| ExitCode::SUCCESS),
        Cmd::Table(args) => read_results(&args.files).map(|results| {
            let (kept, dropped) = compare::drop_disturbed(results, args.max_other_pct);
            if dropped > 0 {
                println!(
                    "({dropped} run(s) left out: other load above {}% of a core)\n",
                    args.max_other_pct.unwrap_or_default()
                );
            }
            print!("{}", compare::table(&kept, args.markdown));
            ExitCode::SUCCESS
        }),
        Cmd::Plot(args) => read_results(&args.files).and_then(|mut results| {
            if let Some(limit) = args.max_other_pct {
                for r in &mut results {
                    r.steps.retain(|s| s.other_cpu_pct <= limit);
                }
            }
            let bound = results
                .iter()
                .find_map(|r| r.metrics.get("p99_bound_ms").copied())
                .unwrap_or(50.0);
            plot::write_svg(&args.out, &results, bound)?;
            eprintln!("herald-load: wrote {}", args.out.display());
            Ok(ExitCode::SUCCESS)
        }),
        scenario => run_scenario(scenario),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("herald-load: error: {e:#}");
        ExitCode::from(2)
    })
}

/// Runs a load scenario and prints its result. The coordinator does little work (the workers
/// hold the connections), so one thread is enough.
fn run_scenario(cmd: Cmd) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result: RunResult = runtime.block_on(async move {
        match cmd {
            Cmd::Neurow(a) => scenario::neurow::run(&a).await,
            Cmd::Idle(a) => scenario::idle::run(&a).await,
            Cmd::Broadcast(a) => scenario::broadcast::run(&a).await,
            Cmd::OneToOne(a) => scenario::one_to_one::run(&a).await,
            Cmd::Soak(a) => scenario::soak::run(&a).await,
            Cmd::Storm(a) => scenario::storm::run(&a).await,
            Cmd::StoreInsert(a) => scenario::store::run(&a).await,
            Cmd::StoreFireLag(a) => scenario::fire_lag::run(&a).await,
            Cmd::Login(a) => scenario::login::run(&a).await,
            Cmd::Table(_) | Cmd::Plot(_) | Cmd::Worker => unreachable!("handled in main"),
        }
    })?;
    print!("{}", result.human());
    println!("{}", result.json_line());
    Ok(if result.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_results(files: &[std::path::PathBuf]) -> anyhow::Result<Vec<RunResult>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        out.extend(report::parse_results(&text));
    }
    Ok(out)
}
