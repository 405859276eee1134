//! A small HTTP/1.1 server for tests on 127.0.0.1: one request per
//! connection, answered by a handler and recorded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    /// How many requests for the same path came before this one.
    pub nth: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The server's own `http://host:port`, as the client addressed it.
    pub fn origin(&self) -> String {
        format!("http://{}", self.header("host").unwrap_or_default())
    }
}

pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// The body written again and again after `body`, without a
    /// Content-Length: a body larger than memory, or one that trickles.
    repeat: Option<Repeat>,
}

struct Repeat {
    chunk: String,
    times: usize,
    pause: Duration,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            repeat: None,
        }
    }

    /// After the body, `chunk` `times` times, with `pause` before each; the
    /// body then ends when the connection closes.
    pub fn repeat(mut self, chunk: &str, times: usize, pause: Duration) -> Reply {
        self.repeat = Some(Repeat {
            chunk: chunk.into(),
            times,
            pause,
        });
        self
    }

    pub fn json(status: u16, body: &str) -> Reply {
        Reply::new(status)
            .header("Content-Type", "application/json")
            .body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.into();
        self
    }
}

pub struct TestServer {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    written: Arc<AtomicUsize>,
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

impl TestServer {
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = requests.clone();
        let written = Arc::new(AtomicUsize::new(0));
        let counted = written.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let served = serve(stream, handler.clone(), recorded.clone(), counted.clone());
                tokio::spawn(served);
            }
        });
        TestServer {
            url,
            requests,
            written,
        }
    }

    /// The bytes of bodies written so far, as far as the client took them.
    pub fn body_bytes_written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        let mut requests = self.requests();
        requests.retain(|request| request.path == path);
        requests
    }
}

async fn serve(
    mut stream: TcpStream,
    handler: Handler,
    requests: Arc<Mutex<Vec<Request>>>,
    written: Arc<AtomicUsize>,
) {
    let mut head = Vec::new();
    let mut buffer = [0; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let request = {
        let mut requests = requests.lock().unwrap();
        let request = parse(&String::from_utf8_lossy(&head), &requests);
        requests.push(request.clone());
        request
    };
    let reply = handler(&request);
    let reason = StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("");
    let mut response = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (name, value) in &reply.headers {
        response += &format!("{name}: {value}\r\n");
    }
    let body = match request.method.as_str() {
        "HEAD" => "",
        _ => reply.body.as_str(),
    };
    if reply.repeat.is_none() {
        response += &format!("Content-Length: {}\r\n", reply.body.len());
    }
    response += &format!("Connection: close\r\n\r\n{body}");
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    written.fetch_add(body.len(), Ordering::Relaxed);
    if let Some(repeat) = reply.repeat.as_ref().filter(|_| request.method != "HEAD") {
        for _ in 0..repeat.times {
            if !repeat.pause.is_zero() {
                tokio::time::sleep(repeat.pause).await;
            }
            if stream.write_all(repeat.chunk.as_bytes()).await.is_err() {
                return;
            }
            written.fetch_add(repeat.chunk.len(), Ordering::Relaxed);
        }
    }
    let _ = stream.shutdown().await;
}

fn parse(head: &str, earlier: &[Request]) -> Request {
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Request {
        method,
        path: path.into(),
        query: query.into(),
        headers,
        nth: earlier
            .iter()
            .filter(|request| request.path == path)
            .count(),
    }
}
