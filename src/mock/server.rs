//! The fake's HTTP server: the accept loop and the routing of a request
//! to its endpoint.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::endpoints::{
    checksession, fake_phone_code, jscode2session, phone_number, respond, stable_token, wx_login,
};
use super::state::Shared;

/// Stops a fake's server when dropped: the accept loop ends and open
/// connections are cut. A fake's handle, shared by its clones, owns it.
pub(crate) struct StopOnDrop(watch::Sender<bool>);

impl StopOnDrop {
    /// Stops the server now.
    pub(crate) fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `handler` over HTTP/1 on `listener` in a task until stopped (the
/// fake WeChat's and the fake WeChat Pay's server). A handler's error drops
/// the connection unanswered.
pub(crate) fn spawn_server<H, F, E>(listener: TcpListener, handler: H) -> StopOnDrop
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(accept_loop(listener, handler, stopped));
    StopOnDrop(stop)
}

/// Accepts connections until the server is stopped.
async fn accept_loop<H, F, E>(listener: TcpListener, handler: H, mut stopped: watch::Receiver<bool>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    loop {
        let stream = tokio::select! {
            () = wait_stop(&mut stopped) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: let it pass.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handler);
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                // Errors (including FakeReply::Reset) just close the connection.
                _ = connection => {}
                () = wait_stop(&mut stopped) => {}
            }
        });
    }
}

/// Resolves once the server is stopped or every handle is gone.
async fn wait_stop(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The service error that makes hyper drop the connection unanswered.
#[derive(Debug)]
pub(super) struct ResetConnection;

impl fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection reset by FakeReply::Reset")
    }
}

impl std::error::Error for ResetConnection {}

pub(super) type Reply = Result<Response<Full<Bytes>>, ResetConnection>;

pub(super) async fn serve(shared: Arc<Shared>, req: Request<Incoming>) -> Reply {
    match (req.method(), req.uri().path()) {
        // WeChat reads the query whatever the method (a POST body gives 41002).
        (_, "/sns/jscode2session") => {
            let query = req.uri().query().unwrap_or("").to_owned();
            jscode2session(&shared, &query).await
        }
        (_, "/cgi-bin/stable_token") => Ok(stable_token(&shared, req).await),
        (_, "/wxa/checksession") => {
            let query = req.uri().query().unwrap_or("").to_owned();
            Ok(checksession(&shared, &query))
        }
        (_, "/wxa/business/getuserphonenumber") => Ok(phone_number(&shared, req).await),
        (&Method::POST, "/_fake/wx.login") => Ok(wx_login(&shared, req).await),
        (&Method::POST, "/_fake/phone_code") => Ok(fake_phone_code(&shared, req).await),
        _ => Ok(respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found".into(),
        )),
    }
}
