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
    pub fn start_emulator(config: &Path) -> MotoServer {
        let python = std::env::var("EMULATOR_PYTHON").unwrap_or_else(|_| "python3".to_string());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/emulator/ecr_emulator.py");
        let port = free_port();
        let command = Command::new(&python)
            .arg(script)
            .args(["--port", &port.to_string(), "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        MotoServer::listening(command, "the ECR emulator", port)
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

    /// An ECR client of the server, for seeding it.
    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        let config = aws_sdk_ecr::Config::builder()
            .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
            .region(aws_sdk_ecr::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_ecr::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        aws_sdk_ecr::Client::from_conf(config)
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

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().unwrap().port()
}
