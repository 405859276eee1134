//! Servers for integration tests: moto, and the pull-through cache emulator
//! built on it. Each starts on a free loopback port and stops when dropped.
#![allow(dead_code)] // each test file uses its own part

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// moto's own server.
    pub fn start() -> MotoServer {
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_string());
        let port = free_port();
        let command = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        MotoServer::listening(command, &program, port)
    }

    /// The pull-through cache emulator (emulator/ecr_emulator.py) with a JSON config file.
    /// It picks its own free port and says which on its first line.
    pub fn start_emulator(config: &Path) -> MotoServer {
        use std::io::{BufRead, BufReader};
        let python = std::env::var("EMULATOR_PYTHON").unwrap_or_else(|_| "python3".to_string());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/emulator/ecr_emulator.py");
        let mut child = Command::new(&python)
            .arg(script)
            .args(["--port", "0", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start the ECR emulator: {error}; run `make deps` (pip install -r requirements-dev.txt)")
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|url| url.starts_with("http://"))
            .unwrap_or_else(|| panic!("the ECR emulator did not say where it listens: {line:?}"))
            .to_string();
        MotoServer { child, endpoint }
    }

    fn listening(command: std::io::Result<Child>, name: &str, port: u16) -> MotoServer {
        let child = command.unwrap_or_else(|error| {
            panic!("cannot start {name}: {error}; run `make deps` (pip install -r requirements-dev.txt)")
        });
        let mut server = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{name} exited before it listened on port {port}: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{name} did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The SDK configuration of a client of the server, for seeding it:
    /// `aws_sdk_ecr::Client::new(&server.sdk_config())`.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        use aws_config::{BehaviorVersion, Region};
        use aws_sdk_ecr::config::{Credentials, SharedCredentialsProvider};
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "test", "test", None, None, "tests",
            )))
            .build()
    }

    /// An ECR client of the server, for seeding it.
    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk_config())
    }

    /// Runs the binary against this server with `args` (and `--output json`,
    /// which every command takes), and reads the one JSON document it prints.
    pub fn json_output(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Option<i32>, serde_json::Value) {
        let output = Command::new(env!("CARGO_BIN_EXE_ecr-cache-warmer"))
            .args(args)
            .args(["--output", "json"])
            .envs(self.env())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let document = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("a JSON document: {output:?}"));
        (output.status.code(), document)
    }

    /// A manifest as the emulator's upstream `registry` serves it (anonymous
    /// token, then a GET): its Docker-Content-Digest and its JSON.
    pub async fn upstream_manifest(
        &self,
        registry: &str,
        name: &str,
        reference: &str,
    ) -> (String, serde_json::Value) {
        let base = format!("{}/upstream/{registry}", self.endpoint);
        let token = reqwest::get(format!("{base}/token?scope=repository:{name}:pull"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let token: serde_json::Value = serde_json::from_slice(&token).unwrap();
        let answer = reqwest::Client::new()
            .get(format!("{base}/v2/{name}/manifests/{reference}"))
            .bearer_auth(token["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "{name}:{reference}: {answer:?}"
        );
        let digest = answer.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string();
        let body = answer.bytes().await.unwrap();
        (digest, serde_json::from_slice(&body).unwrap())
    }

    /// `REGISTRY=URL` of the upstream registry API this emulator serves, for
    /// `--upstream-endpoint` and `WARM_UPSTREAM_ENDPOINTS`.
    pub fn upstream_endpoint(&self, registry: &str) -> String {
        format!("{registry}={}/upstream/{registry}", self.endpoint)
    }

    /// The environment that points the binary at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_MAX_ATTEMPTS", "1".into()),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh temporary folder of a test's own, removed when dropped.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        use std::hash::{BuildHasher, RandomState};
        loop {
            let suffix = RandomState::new().hash_one(std::time::SystemTime::now());
            let path = std::env::temp_dir().join(format!("ecr-cache-warmer-test-{suffix:016x}"));
            // create_dir fails when the folder exists: the folder is this test's alone.
            match std::fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => panic!("cannot create {}: {error}", path.display()),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A fresh temporary folder with a copy of the emulator's catalog and a
/// config file that uses it.
pub struct EmulatorDir {
    pub path: std::path::PathBuf,
    pub config: std::path::PathBuf,
    _dir: TempDir,
}

impl EmulatorDir {
    pub fn new(mut config: serde_json::Value) -> EmulatorDir {
        let dir = TempDir::new();
        let path = dir.path.clone();
        let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/emulator/catalog.json");
        std::fs::copy(catalog, path.join("catalog.json")).unwrap();
        config["catalog"] = serde_json::json!("catalog.json");
        let config_path = path.join("config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        EmulatorDir {
            path,
            config: config_path,
            _dir: dir,
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().unwrap().port()
}
