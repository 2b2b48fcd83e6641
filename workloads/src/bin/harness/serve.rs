//! `harness serve`: the reports folder over HTTP, as Jepsen's `serve`
//! does, for people who would rather open a URL than a `file://` path:
//! the index of runs at `/`, each run's page, and its raw files (history,
//! node logs) as text in the browser.

use crate::output::outln;
use anyhow::Context;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::net::IpAddr;
use std::path::Path;

/// Serves `reports` until Ctrl-C. Paths outside it are refused by
/// `ServeDir` (`..` never escapes the folder).
pub async fn serve(reports: &Path, bind: IpAddr, port: u16) -> anyhow::Result<i32> {
    anyhow::ensure!(
        reports.is_dir(),
        "{} is not a folder of runs: run one first (make test-partition), or give --reports",
        reports.display()
    );
    // The index may be older than the runs beside it (a run interrupted
    // before it rewrote it).
    harness::report::index::write(reports).context("writing the index of runs")?;
    let files = tower_http::services::ServeDir::new(reports).append_index_html_on_directories(true);
    let app = axum::Router::new().fallback_service(files).layer(axum::middleware::from_fn(raw_files_as_text));
    let listener =
        tokio::net::TcpListener::bind((bind, port)).await.with_context(|| format!("binding {bind}:{port}"))?;
    let address = listener.local_addr()?;
    outln!("serving {} at http://{address}/ (Ctrl-C stops)", reports.display());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(crate::output::EXIT_VALID)
}

/// Histories and logs have no registered type: shown as text, not
/// downloaded.
async fn raw_files_as_text(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let raw = [".jsonl", ".log", ".edn"].iter().any(|ext| path.ends_with(ext));
    let mut response = next.run(request).await;
    if raw && response.status().is_success() {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    response
}
