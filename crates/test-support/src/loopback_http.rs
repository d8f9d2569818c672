//! An HTTP/1.1 server on loopback for API fakes: every request, its body read whole, goes to
//! one answering function; the server stops when its handle is dropped.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::http::request::Parts;
use hyper::{Request, Response};

pub type Answer = Response<Full<Bytes>>;
pub type Handler = Arc<dyn Fn(&Parts, &Bytes) -> Answer + Send + Sync>;

/// A running server; dropping it stops it.
pub struct LoopbackServer {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LoopbackServer {
    pub fn start(handler: Handler) -> LoopbackServer {
        // Bound here, served on a runtime of its own: starts inside or outside a runtime.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        _ = &mut stopped => break,
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |request: Request<Incoming>| {
                                let handler = handler.clone();
                                async move {
                                    let (parts, body) = request.into_parts();
                                    let body = body
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes())
                                        .unwrap_or_default();
                                    Ok::<_, Infallible>(handler(&parts, &body))
                                }
                            });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    });
                }
            })
        });
        LoopbackServer {
            port,
            stop: Some(stop),
        }
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Another origin that records every request it gets (method, path, headers and body as one
/// line) and answers `{}`.
pub struct Recorder {
    pub server: LoopbackServer,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = LoopbackServer::start(Arc::new(move |parts: &Parts, body: &Bytes| {
            log.lock().unwrap().push(format!(
                "{} {} {:?} {}",
                parts.method,
                parts.uri,
                parts.headers,
                String::from_utf8_lossy(body)
            ));
            Response::new(Full::new(Bytes::from_static(b"{}")))
        }));
        Recorder { server, seen }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Every request it got.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A server that answers every request with `code` and a `Location` of the same path and
/// query at `to`, but requests whose path ends with `answered`, which `other` answers.
pub fn redirecting(
    code: u16,
    answered: &'static str,
    to: String,
    other: Handler,
) -> LoopbackServer {
    LoopbackServer::start(Arc::new(move |parts: &Parts, body: &Bytes| {
        if parts.uri.path().ends_with(answered) {
            return other(parts, body);
        }
        Response::builder()
            .status(code)
            .header("Location", format!("{to}{}", parts.uri))
            .body(Full::new(Bytes::new()))
            .unwrap()
    }))
}
