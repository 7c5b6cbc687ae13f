//! The live web view at `/`: one HTML page, its script and its style sheet, embedded in the binary (no
//! CDN, nothing to install). The page polls `/status` and `/history` every second.

use axum::http::header;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/view.js");
const STYLE: &str = include_str!("web/view.css");

/// The routes of the page and its assets.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/view.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }))
        .route("/view.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
}
