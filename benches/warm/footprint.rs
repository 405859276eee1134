//! The function's footprint: how long the release binary takes from process
//! start to asking the Lambda runtime API for its first event, its memory,
//! and its size on disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const NEXT_EVENT: &str = "/2018-06-01/runtime/invocation/next";

/// The release binary, where cargo builds it (`cargo metadata`, so that
/// CARGO_TARGET_DIR is honoured).
pub fn release_binary() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot run cargo metadata: {error}"))?;
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("cannot read cargo metadata: {error}"))?;
    let target = metadata["target_directory"]
        .as_str()
        .ok_or("cargo metadata names no target directory")?;
    let binary = Path::new(target).join("release/ecr-cache-warmer");
    match binary.is_file() {
        true => Ok(binary),
        false => Err(format!(
            "{} is missing: run `cargo build --release` first",
            binary.display()
        )),
    }
}

/// One start of the function under a fake runtime API.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub init: Duration,
    /// The process's peak resident memory when it asked for its first event.
    pub rss_kib: Option<u64>,
}

/// Starts the binary `starts` times as Lambda would, each time until it asks
/// for its first event. One local server is both the runtime API and the ECR
/// endpoint: init's DescribeRegistry (the caller's account) is answered, so
/// that init does what it does in Lambda, and the rules come from WARM_RULES.
pub async fn starts(binary: &Path, starts: usize) -> Result<Vec<Start>, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| format!("cannot listen on loopback: {error}"))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    let (asked, mut next_asked) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, asked.clone()));
        }
    });
    let mut measured = Vec::with_capacity(starts);
    for _ in 0..starts {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .env_clear()
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", address.to_string().as_str()),
                ("AWS_LAMBDA_FUNCTION_NAME", "ecr-cache-warmer-bench"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "AKIDBENCH"),
                ("AWS_SECRET_ACCESS_KEY", "bench"),
                ("AWS_ENDPOINT_URL", format!("http://{address}").as_str()),
                ("WARM_RULES", "docker-hub=registry-1.docker.io"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let arrived = tokio::time::timeout(Duration::from_secs(10), next_asked.recv()).await;
        let rss_kib = peak_rss_kib(&format!("/proc/{}/status", child.id()));
        // Ours to end: the child started above, by its handle.
        let _ = child.kill();
        let _ = child.wait();
        match arrived {
            Ok(Some(at)) => measured.push(Start {
                init: at - started,
                rss_kib,
            }),
            _ => {
                server.abort();
                return Err("the function did not ask for an event within 10 s".to_string());
            }
        }
    }
    server.abort();
    Ok(measured)
}

/// A minimal HTTP/1.1 server: it notes when the next event is asked for (and
/// never answers it), and answers ECR's DescribeRegistry.
async fn serve(stream: TcpStream, asked: mpsc::UnboundedSender<Instant>) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        if request_line.contains(NEXT_EVENT) {
            let _ = asked.send(Instant::now());
            return Ok(());
        }
        let (mut length, mut target) = (0, String::new());
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let Some((name, value)) = line.trim_end().split_once(':') else {
                break;
            };
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "x-amz-target" => target = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        let (status, answer) = if target.ends_with(".DescribeRegistry") {
            (
                "200 OK",
                r#"{"registryId":"123456789012","replicationConfiguration":{"rules":[]}}"#,
            )
        } else {
            (
                "400 Bad Request",
                r#"{"__type":"UnknownOperationException","message":"not in the bench"}"#,
            )
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\n\
             content-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        stream.get_mut().write_all(response.as_bytes()).await?;
    }
}

/// VmHWM (peak resident memory) from a `/proc/<pid>/status` file.
pub fn peak_rss_kib(status_file: &str) -> Option<u64> {
    std::fs::read_to_string(status_file)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// CPU time (user and system, every thread) this process has used so far.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture Lambda runs.
    Some(Duration::from_millis(ticks * 10))
}
