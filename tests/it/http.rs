//! The sidecar's HTTP server over real sockets (`serve::api::serve_http`, in this process, no
//! GPU): half-sent requests are dropped after the header-read timeout, connections beyond the
//! limit wait their turn, and a committed corpus of malformed requests gets the expected status
//! and body — JSON from the router, an empty body where hyper answers a request it cannot
//! parse.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use gpugate::serve::api::{app, serve_http, HttpLimits};
use gpugate::serve::history::{History, Retention, Trigger};
use gpugate::serve::metrics::Metrics;
use gpugate::serve::State;
use serde_json::Value;

const TOKEN: &str = "corpus-token";

/// A server on 127.0.0.1 in this process, on its own runtime; the test talks to it over plain
/// blocking sockets. The run queue is kept so runs can be accepted; nothing measures them.
struct TestServer {
    port: u16,
    runtime: tokio::runtime::Runtime,
    _queue: mpsc::Receiver<(u64, Trigger)>,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    fn start(limits: HttpLimits) -> TestServer {
        let (tx, rx) = mpsc::channel();
        let state = Arc::new(State::new(
            History::open(None, Retention::runs(10)).unwrap(),
            Metrics::new("node-a", std::time::Duration::from_secs(3600)),
            Some(TOKEN.into()),
            tx,
        ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(serve_http(listener, app(state), limits, async {
            let _ = stopped.await;
        }));
        TestServer {
            port,
            runtime,
            _queue: rx,
            stop,
            served,
        }
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).unwrap()
    }

    /// Graceful shutdown: the server returns once its connections are done.
    fn stop(self) {
        let _ = self.stop.send(());
        let served = self.served;
        self.runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), served).await })
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

fn limits(header_read_timeout: Duration, max_connections: usize) -> HttpLimits {
    HttpLimits {
        header_read_timeout,
        max_connections,
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Everything the server sends until it closes the connection, and when that happened; `None`
/// if it is still open after `within`.
fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<(Vec<u8>, Instant)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some((out, Instant::now())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            // Reset by the server: closed.
            Err(_) => return Some((out, Instant::now())),
        }
    }
}

/// Status, head and body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> Option<(u16, String, String)> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_string(), body.to_string()))
}

#[test]
fn half_sent_requests_are_dropped_after_the_header_read_timeout() {
    let timeout = Duration::from_millis(500);
    let server = TestServer::start(limits(timeout, 16));
    let started = Instant::now();
    // Nothing sent; a request line and part of the head; a head dribbled a byte at a time.
    let mut silent = server.connect();
    let mut partial = server.connect();
    partial
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut dribbling = server.connect();
    let dribbler = std::thread::spawn(move || {
        for b in b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz" {
            if dribbling.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        dribbling
    });
    // A well-formed request is still served meanwhile.
    let mut ok = server.connect();
    ok.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (raw, _) = read_to_close(&mut ok, Duration::from_secs(10)).unwrap();
    assert_eq!(parse_response(&raw).unwrap().0, 200);

    // A generous bound: each is closed long before a client would give up, and never answered.
    let bound = Duration::from_secs(10);
    for (name, stream) in [("silent", &mut silent), ("partial", &mut partial)] {
        let (raw, closed_at) = read_to_close(stream, bound)
            .unwrap_or_else(|| panic!("{name}: still open after {bound:?}"));
        assert!(raw.is_empty(), "{name}: {}", String::from_utf8_lossy(&raw));
        assert!(
            closed_at - started >= timeout / 2,
            "{name}: closed before the timeout"
        );
    }
    let mut dribbling = dribbler.join().unwrap();
    let (raw, _) = read_to_close(&mut dribbling, bound)
        .expect("a dribbled head is dropped too: the timeout covers the whole head");
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    server.stop();
}

#[test]
fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let server = TestServer::start(limits(Duration::from_secs(60), 2));
    let held = [server.connect(), server.connect()];
    let mut waiting = server.connect();
    waiting
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Both slots are held by idle connections: no answer, however long we wait here.
    assert!(
        read_to_close(&mut waiting, Duration::from_millis(500)).is_none(),
        "a third connection was served while the limit is 2"
    );
    // A slot frees up: the waiting request is served.
    drop(held);
    let (raw, _) =
        read_to_close(&mut waiting, Duration::from_secs(30)).expect("served once a slot is free");
    assert_eq!(parse_response(&raw).unwrap().0, 200);
    server.stop();
}

/// What a corpus request must get back.
enum Body {
    /// A JSON error: `{"error": <contains this>, "status": <the status>}`.
    JsonError(&'static str),
    /// Any JSON document (a success).
    Json,
    /// hyper answered before the router: no body.
    Empty,
}

/// The committed corpus: raw request bytes, the status, and the body each must get.
fn corpus() -> Vec<(&'static str, Vec<u8>, u16, Body)> {
    let close = "Host: x\r\nConnection: close\r\n";
    let req = |head: String| head.into_bytes();
    let many_headers: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    vec![
        ("unknown path", req(format!("GET /no/such/path HTTP/1.1\r\n{close}\r\n")), 404, Body::JsonError("no such endpoint")),
        ("POST on the page at /", req(format!("POST / HTTP/1.1\r\n{close}Content-Length: 0\r\n\r\n")), 405, Body::JsonError("method not allowed")),
        ("DELETE on runs", req(format!("DELETE /api/v1/runs HTTP/1.1\r\n{close}\r\n")), 405, Body::JsonError("method not allowed")),
        ("PUT on the verdict", req(format!("PUT /api/v1/verdict HTTP/1.1\r\n{close}Content-Length: 0\r\n\r\n")), 405, Body::JsonError("method not allowed")),
        ("POST without credentials", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Content-Length: 0\r\n\r\n")), 401, Body::JsonError("bearer token")),
        ("Basic scheme", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Authorization: Basic Y29ycHVzLXRva2Vu\r\nContent-Length: 0\r\n\r\n")), 401, Body::JsonError("bearer token")),
        ("scheme without a token", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Authorization: Bearer\r\nContent-Length: 0\r\n\r\n")), 401, Body::JsonError("bearer token")),
        ("wrong token, lower-case scheme", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Authorization: bearer corpus-tokeX\r\nContent-Length: 0\r\n\r\n")), 401, Body::JsonError("bearer token")),
        ("token as a prefix of the right one", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Authorization: Bearer corpus\r\nContent-Length: 0\r\n\r\n")), 401, Body::JsonError("bearer token")),
        ("body past the limit", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Authorization: Bearer {TOKEN}\r\nContent-Length: 20000\r\n\r\nxxxx")), 413, Body::JsonError("too large")),
        ("run id not a number", req(format!("GET /api/v1/runs/abc HTTP/1.1\r\n{close}\r\n")), 400, Body::JsonError("not a number")),
        ("run id past u64", req(format!("GET /api/v1/runs/99999999999999999999999 HTTP/1.1\r\n{close}\r\n")), 400, Body::JsonError("not a number")),
        ("negative run id", req(format!("GET /api/v1/runs/-1 HTTP/1.1\r\n{close}\r\n")), 400, Body::JsonError("not a number")),
        ("run id not UTF-8", req(format!("GET /api/v1/runs/%ff%fe HTTP/1.1\r\n{close}\r\n")), 400, Body::JsonError("UTF-8")),
        ("unknown run", req(format!("GET /api/v1/runs/7 HTTP/1.1\r\n{close}\r\n")), 404, Body::JsonError("no run 7")),
        ("HTTP/1.0 without Host", req("GET /api/v1/verdict HTTP/1.0\r\n\r\n".into()), 200, Body::Json),
        ("right token, upper-case scheme", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Authorization: BEARER {TOKEN}\r\nContent-Length: 0\r\n\r\n")), 202, Body::Json),
        ("a second run while one is queued", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Authorization: bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n")), 409, Body::JsonError("already in progress")),
        ("garbage request line", req("GARBAGE\r\n\r\n".into()), 400, Body::Empty),
        ("unknown HTTP version", req("GET /livez HTTP/9.9\r\nHost: x\r\n\r\n".into()), 400, Body::Empty),
        ("Content-Length not a number", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Content-Length: abc\r\n\r\n")), 400, Body::Empty),
        ("two different Content-Lengths", req(format!("POST /api/v1/runs HTTP/1.1\r\n{close}Content-Length: 1\r\nContent-Length: 2\r\n\r\nx")), 400, Body::Empty),
        ("NUL in a header value", b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Bad: a\0b\r\n\r\n".to_vec(), 400, Body::Empty),
        ("header without a colon", req("GET /livez HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".into()), 400, Body::Empty),
        ("too many headers", req(format!("GET /livez HTTP/1.1\r\n{close}{many_headers}\r\n")), 431, Body::Empty),
        ("URI past 64 KiB", req(format!("GET /{} HTTP/1.1\r\n{close}\r\n", "a".repeat(70_000))), 414, Body::Empty),
    ]
}

#[test]
fn malformed_requests_get_the_expected_status_and_body() {
    let server = TestServer::start(limits(Duration::from_secs(10), 16));
    let mut failures = vec![];
    for (name, raw, want_status, want_body) in corpus() {
        let mut stream = server.connect();
        // A server may answer and close before reading everything: a failed write is fine.
        let _ = stream.write_all(&raw);
        let Some((response, _)) = read_to_close(&mut stream, Duration::from_secs(20)) else {
            failures.push(format!("{name}: no answer, connection left open"));
            continue;
        };
        let Some((status, head, body)) = parse_response(&response) else {
            failures.push(format!(
                "{name}: not an HTTP response: {:?}",
                String::from_utf8_lossy(&response)
            ));
            continue;
        };
        if status != want_status {
            failures.push(format!(
                "{name}: status {status}, expected {want_status}: {head}\n{body}"
            ));
            continue;
        }
        let json = serde_json::from_str::<Value>(&body);
        let fine = match want_body {
            Body::Empty => body.is_empty(),
            Body::Json => {
                json.is_ok()
                    && head
                        .to_ascii_lowercase()
                        .contains("content-type: application/json")
            }
            Body::JsonError(needle) => json.as_ref().is_ok_and(|j| {
                j["status"] == want_status
                    && j["error"].as_str().is_some_and(|e| e.contains(needle))
            }),
        };
        if !fine {
            failures.push(format!(
                "{name}: unexpected body for {status}: {head}\n{body}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    server.stop();
}

/// The framework's own errors — here a handler timeout, which tower-http answers with an empty
/// 408 — become the API's JSON error.
#[tokio::test]
async fn framework_errors_are_rewritten_as_json() {
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let router = axum::Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(20),
        ))
        .layer(axum::middleware::map_response(
            gpugate::serve::api::json_errors,
        ));
    let response = router
        .oneshot(
            axum::http::Request::get("/slow")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 408);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["status"], 408, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not answered"),
        "{body}"
    );
}
