//! `weir simulate`: reads the policy and the trace, replays them through
//! `weir_controllers::simulate`, writes `timeline.csv`, `summary.json`, `plot.svg` and
//! `plot.png` in `--out`, and prints the summary. A progress bar goes to stderr when it is a terminal.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use weir_controllers::simulate::{self, ModelOptions, Replay, ValueUnit};

use super::recommend;
use crate::cli::{SimulateArgs, SimulateCompare, TraceValueUnit};

fn read(path: &std::path::Path, flag: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))
}

/// Runs `weir simulate`.
pub fn run(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let policy_name = args.policy.display().to_string();
    let policy = match simulate::parse_policy(&read(&args.policy, "--policy")?, &policy_name) {
        Ok(policy) => policy,
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(problem) = recommend::policy_problem(&policy.spec)? {
        println!("{policy_name}: spec{problem}");
        return Ok(ExitCode::FAILURE);
    }
    let trace_name = args.trace.display().to_string();
    let text = read(&args.trace, "--trace")?;
    let trace = if trace_name.ends_with(".json") {
        simulate::parse_prometheus_json(&text, &trace_name)
    } else {
        let unit = match args.value_unit {
            TraceValueUnit::PerInterval => ValueUnit::PerInterval,
            TraceValueUnit::PerSecond => ValueUnit::PerSecond,
        };
        simulate::parse_csv(&text, unit, &trace_name)
    };
    let trace = match trace {
        Ok(trace) => trace,
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    anyhow::ensure!(
        args.capacity_per_pod > 0.0 && args.capacity_per_pod.is_finite(),
        "--capacity-per-pod must be a positive number of requests per second"
    );
    let options = ModelOptions {
        capacity_per_pod: args.capacity_per_pod,
        startup_seconds: args.startup.as_secs(),
        sync_seconds: args.sync_period.as_secs().max(1),
        metric_window_seconds: args.metric_window.as_secs().max(1),
        initial_replicas: None,
    };
    let mut policies = vec![("policy", policy.clone())];
    if args.compare == Some(SimulateCompare::Hpa) {
        policies.push(("hpa", simulate::as_hpa(&policy)));
    }
    // The policies replay side by side, one thread each: a replay is pure and shares
    // nothing but the trace, so `--compare hpa` takes the time of one replay on two cores.
    let bars = indicatif::MultiProgress::new();
    let replays: Vec<(&str, Replay)> = std::thread::scope(|scope| {
        let running: Vec<_> = policies
            .iter()
            .map(|(name, policy)| {
                // indicatif draws on stderr only when it is a terminal.
                let bar = bars.add(
                    indicatif::ProgressBar::new(1000).with_message(format!("simulating {name}")),
                );
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {percent:>3}% eta {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                let (trace, options) = (&trace, &options);
                scope.spawn(move || {
                    let replay = simulate::replay(policy, trace, options, |done| {
                        bar.set_position((done * 1000.0) as u64);
                    });
                    bar.finish_and_clear();
                    replay
                })
            })
            .collect();
        policies
            .iter()
            .zip(running)
            .map(|((name, _), thread)| {
                let replay = thread
                    .join()
                    .map_err(|_| anyhow::anyhow!("{policy_name}: the {name} replay panicked"))?
                    .map_err(|e| anyhow::anyhow!("{policy_name}: {e}"))?;
                Ok((*name, replay))
            })
            .collect::<anyhow::Result<_>>()
    })?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    let summary = json!({
        "trace": trace_name,
        "policy": policy_name,
        "model": {
            "capacity_per_pod": options.capacity_per_pod,
            "startup_seconds": options.startup_seconds,
            "sync_period_seconds": options.sync_seconds,
            "metric_window_seconds": options.metric_window_seconds,
        },
        "policies": replays.iter().map(|(name, r)| (name.to_string(), serde_json::to_value(&r.summary).unwrap_or_default())).collect::<serde_json::Map<_, _>>(),
    });
    let summary_text = serde_json::to_string_pretty(&summary)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = args.out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("summary.json", format!("{summary_text}\n").as_bytes())?;
    let named: Vec<(&str, &Replay)> = replays.iter().map(|(n, r)| (*n, r)).collect();
    write("timeline.csv", simulate::timeline_csv(&named).as_bytes())?;
    let svg = simulate::plot::svg(&named, options.sync_seconds).map_err(anyhow::Error::msg)?;
    let png = png(&svg)?;
    write("plot.svg", svg.as_bytes())?;
    write("plot.png", &png)?;
    println!("{summary_text}");
    Ok(ExitCode::SUCCESS)
}

/// The plot rasterized on white with resvg (pure Rust; plotters' own bitmap backend would
/// need fontconfig). Text uses the system's fonts (DejaVu Sans, from `fonts-dejavu-core`,
/// for plotters' `sans-serif`); without any, the PNG has no labels and a warning says so.
fn png(svg: &str) -> anyhow::Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    let dejavu = "DejaVu Sans";
    let dejavu_file = fonts.faces().find_map(|face| match &face.source {
        usvg::fontdb::Source::File(path)
            if face.families.iter().any(|(name, _)| name == dejavu)
                && face.weight == usvg::fontdb::Weight::NORMAL
                && face.style == usvg::fontdb::Style::Normal =>
        {
            Some(path.clone())
        }
        _ => None,
    });
    if let Some(path) = dejavu_file {
        // Without fontdb's `memmap` (left off: it maps files with `unsafe`), a face on
        // file is read from disk again for every label; the one face the plot uses is
        // read once instead. fontdb's default sans-serif is Arial, which Linux machines
        // seldom have.
        if let Ok(data) = std::fs::read(&path) {
            *fonts = usvg::fontdb::Database::new();
            fonts.load_font_data(data);
        }
        fonts.set_sans_serif_family(dejavu);
    }
    if fonts.is_empty() {
        eprintln!(
            "warning: no system fonts found (install fonts-dejavu-core): plot.png has no labels"
        );
    }
    let tree = usvg::Tree::from_str(svg, &options).context("reading the plot's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).context("the plot has no size")?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("encoding plot.png")
}
