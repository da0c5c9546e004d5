//! `redraft serve`: an OpenAI-compatible server for a model directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use redraft::model::DeviceSpec;

use super::LoadedModel;
use crate::server::{Settings, serve};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A model directory (config.json, safetensors weights, tokenizer) or a `.gguf` file.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) to apply to
    /// the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one; the address is printed on the first line of output).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The model name clients send (default: the directory's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Most sequences sampled together in one batch.
    #[arg(long, default_value_t = 64)]
    max_batch_rows: usize,
    /// Most sampling requests handled at once; more are answered 503 with `Retry-After`.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Most open connections (reading, waiting or answering); more are answered 503 with
    /// `Retry-After`.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send its whole request (head and body); slower ones get 408.
    /// Also the limit on each write of the answer.
    #[arg(long, default_value_t = 30.0)]
    request_timeout_secs: f64,
    /// Seconds an open connection may wait for its next request (HTTP keep-alive) before it
    /// is closed.
    #[arg(long, default_value_t = 5.0)]
    keep_alive_secs: f64,
    /// Most requests answered on one connection; the last one's answer closes it.
    #[arg(long, default_value_t = 100)]
    max_requests_per_connection: usize,
    /// Seed of requests that bring none (incremented per request).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device: cpu, wgpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let loaded = LoadedModel::open(&args.model, args.adapter.as_deref(), args.device)?;
    let model_name = args.served_model_name.unwrap_or_else(|| {
        args.model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "redraft".into())
    });
    serve(
        loaded,
        Settings {
            host: args.host,
            port: args.port,
            model_name,
            max_body_bytes: args.max_body_bytes,
            max_batch_rows: args.max_batch_rows.max(1),
            max_in_flight: args.max_in_flight.max(1),
            max_connections: args.max_connections.max(1),
            request_timeout: seconds("--request-timeout-secs", args.request_timeout_secs)?,
            keep_alive: seconds("--keep-alive-secs", args.keep_alive_secs)?,
            max_requests_per_connection: args.max_requests_per_connection.max(1),
            seed: args.seed,
        },
    )
}

/// A positive duration given in seconds on the command line; errors name the flag.
fn seconds(flag: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| anyhow::anyhow!("{flag} must be a positive number of seconds, got {value}"))
}
