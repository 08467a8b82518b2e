//! The simulator's HTTP routes: the provider's API under `/api/v1`, and the test
//! controls under `/_sim`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::faults::{self, Fault, FaultAction};
use super::listener::Peer;
use super::model::{RequestRecord, SimSnapshot, SimState};

type S = State<Arc<Shared>>;

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/snapshots/", get(list_snapshots).post(create_snapshot))
        .route("/snapshots/{id}/", delete(delete_snapshot))
        .route("/snapshots/{id}/restore/", post(restore_snapshot))
        .route("/servers/", get(list_servers))
        .route("/servers/{id}/", get(get_server))
        .route("/servers/{id}/stop/", post(stop_server))
        .route("/servers/{id}/start/", post(start_server))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not found.") })
        .layer(middleware::from_fn_with_state(shared.clone(), gate));
    let control = Router::new()
        .route("/state", get(control_state))
        .route("/servers", post(control_add_server))
        .route("/snapshots", post(control_add_snapshot))
        .route(
            "/faults",
            post(control_add_fault).delete(control_clear_faults),
        );
    Router::new()
        .nest("/api/v1", api)
        .nest("/_sim", control)
        .with_state(shared)
}

fn error(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, SimState> {
    let mut guard = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    guard.advance();
    guard
}

/// Every API request passes here: latency, the token check, faults, and the log.
async fn gate(
    State(shared): S,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let uri = request.uri();
    let path = match uri.query() {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_string(),
    };
    let path = path.strip_prefix("/api/v1").unwrap_or(&path).to_string();
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.options.token));
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    let fault = if !authorized {
        None
    } else if over_rate_limit(&shared) {
        Some(FaultAction::Status {
            status: 429,
            retry_after: Some(1),
        })
    } else {
        faults::take(&mut lock(&shared).faults, &method, &path)
    };
    if let Some(FaultAction::Latency { ms }) = fault {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let response = match (&fault, authorized) {
        (_, false) => error(
            StatusCode::UNAUTHORIZED,
            "Authentication credentials were not provided or are invalid.",
        ),
        (
            Some(FaultAction::Status {
                status,
                retry_after,
            }),
            _,
        ) => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = error(code, "Simulated failure.");
            if let Some(secs) = retry_after
                && let Ok(v) = HeaderValue::from_str(&secs.to_string())
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        (Some(FaultAction::EndlessBody), _) => {
            let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
            let stream = futures_util::stream::repeat_with(move || {
                Ok::<_, std::convert::Infallible>(chunk.clone())
            });
            (StatusCode::OK, Body::from_stream(stream)).into_response()
        }
        (Some(FaultAction::Body { status, body }), _) => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, body.replace("{token}", &shared.options.token)).into_response()
        }
        (
            Some(
                FaultAction::SnapshotFails
                | FaultAction::SnapshotNeverCompletes
                | FaultAction::RepeatEntry
                | FaultAction::ConflictingEntry
                | FaultAction::IgnoreServerFilter
                | FaultAction::OmitInProgress
                | FaultAction::AnswerOtherSnapshot,
            ),
            _,
        ) => {
            let fate = fault.clone();
            let mut request = request;
            request.extensions_mut().insert(Fate(fate));
            next.run(request).await
        }
        _ => next.run(request).await,
    };
    let status = response.status().as_u16();
    lock(&shared).requests.push(RequestRecord {
        at: Utc::now(),
        method,
        path,
        status,
        authorized,
    });
    match fault {
        Some(FaultAction::DropAfterApply) => {
            shared.doomed.cut(peer.0);
            response
        }
        Some(FaultAction::HangAfterApply) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            response
        }
        Some(FaultAction::Malformed) => (
            StatusCode::OK,
            Body::from("{\"results\": [ this is not json"),
        )
            .into_response(),
        _ => response,
    }
}

/// Takes a token from the simulated provider's rate limit; true when none is left.
fn over_rate_limit(shared: &Shared) -> bool {
    let Some(limiter) = &shared.limiter else {
        return false;
    };
    !limiter.lock().unwrap_or_else(|p| p.into_inner()).try_take()
}

/// A fault that decides how a snapshot being created will end.
#[derive(Clone)]
struct Fate(Option<FaultAction>);

#[derive(Deserialize)]
struct ListQuery {
    server_id: Option<u64>,
    page: Option<usize>,
}

fn snapshot_json(state: &SimState, s: &SimSnapshot) -> Value {
    let server_name = state
        .servers
        .get(&s.server_id)
        .map(|v| v.name.clone())
        .unwrap_or_default();
    json!({
        "id": s.id,
        "server": { "id": s.server_id, "name": server_name },
        "name": s.name,
        "status": s.status,
        "size_mb": s.size_mb,
        "created_at": s.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "description": s.description,
    })
}

async fn list_snapshots(
    State(shared): S,
    Query(q): Query<ListQuery>,
    request: Request,
) -> Response {
    let fate = request.extensions().get::<Fate>().and_then(|f| f.0.clone());
    let state = lock(&shared);
    let filter = match fate {
        Some(FaultAction::IgnoreServerFilter) => None,
        _ => q.server_id,
    };
    let all: Vec<&SimSnapshot> = state
        .snapshots
        .values()
        .filter(|s| filter.is_none_or(|id| s.server_id == id))
        .filter(|s| !(fate == Some(FaultAction::OmitInProgress) && s.status == "in_progress"))
        .collect();
    let size = shared.options.page_size.max(1);
    let page = q.page.unwrap_or(1).max(1);
    let mut results: Vec<Value> = all
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|s| snapshot_json(&state, s))
        .collect();
    if let Some(last) = results.last().cloned() {
        match fate {
            Some(FaultAction::RepeatEntry) => results.push(last),
            Some(FaultAction::ConflictingEntry) => {
                let mut other = last;
                other["status"] = json!("in_progress");
                other["size_mb"] = Value::Null;
                results.push(other);
            }
            _ => {}
        }
    }
    let next = (page * size < all.len()).then(|| {
        let mut url = format!("{}/snapshots/?", shared.base_url);
        if let Some(id) = q.server_id {
            url.push_str(&format!("server_id={id}&"));
        }
        format!("{url}page={}", page + 1)
    });
    Json(json!({ "count": all.len(), "next": next, "results": results })).into_response()
}

#[derive(Deserialize)]
struct CreateBody {
    server_id: u64,
    name: String,
    #[serde(default)]
    description: Option<String>,
}

async fn create_snapshot(State(shared): S, request: Request) -> Response {
    let fate = request.extensions().get::<Fate>().and_then(|f| f.0.clone());
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), 1 << 20).await else {
        return error(StatusCode::BAD_REQUEST, "Unreadable body.");
    };
    let Ok(body) = serde_json::from_slice::<CreateBody>(&bytes) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid parameters: server_id and name are required.",
        );
    };
    if !crate::names::is_plain_name(&body.name) {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid name: use letters, digits, hyphens and underscores.",
        );
    }
    let mut state = lock(&shared);
    if !state.servers.contains_key(&body.server_id) {
        return error(StatusCode::NOT_FOUND, "Server does not exist.");
    }
    if state.snapshots_of(body.server_id).len() >= shared.options.cap {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Snapshot limit reached: at most {} snapshots per server.",
                shared.options.cap
            ),
        );
    }
    let now = Utc::now();
    let id = state.new_id();
    let finishes = chrono::Duration::from_std(shared.options.create_time).unwrap_or_default();
    let snapshot = SimSnapshot {
        id,
        server_id: body.server_id,
        name: body.name,
        status: "in_progress".into(),
        size_mb: None,
        created_at: now,
        description: body.description,
        finishes_at: match fate {
            Some(FaultAction::SnapshotNeverCompletes) => None,
            _ => Some(now + finishes),
        },
        finishes_as: match fate {
            Some(FaultAction::SnapshotFails) => "failed".into(),
            _ => "completed".into(),
        },
    };
    let other = match fate {
        Some(FaultAction::AnswerOtherSnapshot) => state.snapshots.values().next().cloned(),
        _ => None,
    };
    let mut answer = snapshot_json(&state, other.as_ref().unwrap_or(&snapshot));
    answer["message"] =
        json!("Snapshot is being created. This may take 3-10 minutes depending on server size.");
    state.snapshots.insert(id, snapshot);
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn delete_snapshot(State(shared): S, Path(id): Path<u64>) -> Response {
    match lock(&shared).snapshots.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "Snapshot does not exist."),
    }
}

async fn restore_snapshot(State(shared): S, Path(id): Path<u64>) -> Response {
    let mut state = lock(&shared);
    let Some(snapshot) = state.snapshots.get(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, "Snapshot does not exist.");
    };
    if snapshot.status != "completed" {
        return error(StatusCode::BAD_REQUEST, "Snapshot is not completed.");
    }
    let Some(server) = state.servers.get_mut(&snapshot.server_id) else {
        return error(StatusCode::NOT_FOUND, "Server does not exist.");
    };
    if server.status == "restoring" {
        return error(
            StatusCode::BAD_REQUEST,
            "Server is not in a valid state for restoration.",
        );
    }
    let done =
        Utc::now() + chrono::Duration::from_std(shared.options.restore_time).unwrap_or_default();
    server.status = "restoring".into();
    server.becomes = Some(("running".into(), done));
    let answer = json!({
        "status": "success",
        "message": "Server is being restored from snapshot. This may take 5-15 minutes.",
        "snapshot": { "id": snapshot.id, "name": snapshot.name,
                      "created_at": snapshot.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) },
        "server": { "id": server.id, "name": server.name, "status": "restoring" },
    });
    Json(answer).into_response()
}

fn server_json(s: &super::model::SimServer) -> Value {
    json!({ "id": s.id, "name": s.name, "status": s.status })
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

/// `GET /servers/`: every server, paginated like the snapshots; a listing fault
/// repeats the page's last server (as it is, or renamed).
async fn list_servers(State(shared): S, Query(q): Query<PageQuery>, request: Request) -> Response {
    let fate = request.extensions().get::<Fate>().and_then(|f| f.0.clone());
    let state = lock(&shared);
    let size = shared.options.page_size.max(1);
    let page = q.page.unwrap_or(1).max(1);
    let count = state.servers.len();
    let mut results: Vec<Value> = state
        .servers
        .values()
        .skip((page - 1) * size)
        .take(size)
        .map(server_json)
        .collect();
    if let Some(last) = results.last().cloned() {
        match fate {
            Some(FaultAction::RepeatEntry) => results.push(last),
            Some(FaultAction::ConflictingEntry) => {
                let mut other = last;
                other["name"] = json!(format!("{}-renamed", other["name"].as_str().unwrap_or("")));
                results.push(other);
            }
            _ => {}
        }
    }
    let next =
        (page * size < count).then(|| format!("{}/servers/?page={}", shared.base_url, page + 1));
    Json(json!({ "count": count, "next": next, "results": results })).into_response()
}

async fn get_server(State(shared): S, Path(id): Path<u64>) -> Response {
    match lock(&shared).servers.get(&id) {
        Some(s) => Json(server_json(s)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Server does not exist."),
    }
}

/// Moves a server towards `target` through `via`; asking for where it is already
/// heading is accepted, as a real provider would.
fn transition(shared: &Shared, id: u64, via: &str, target: &str) -> Response {
    let mut state = lock(shared);
    let Some(server) = state.servers.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Server does not exist.");
    };
    let heading = server.becomes.as_ref().map(|(s, _)| s.as_str());
    if server.status == target || heading == Some(target) {
        return (StatusCode::ACCEPTED, Json(server_json(server))).into_response();
    }
    if server.status == "restoring" || server.becomes.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Server is {}.", server.status),
        );
    }
    let at =
        Utc::now() + chrono::Duration::from_std(shared.options.transition_time).unwrap_or_default();
    server.status = via.to_string();
    server.becomes = Some((target.to_string(), at));
    if target == "stopped" {
        server.stops += 1;
    } else {
        server.starts += 1;
    }
    (StatusCode::ACCEPTED, Json(server_json(server))).into_response()
}

async fn stop_server(State(shared): S, Path(id): Path<u64>) -> Response {
    transition(&shared, id, "stopping", "stopped")
}

async fn start_server(State(shared): S, Path(id): Path<u64>) -> Response {
    transition(&shared, id, "starting", "running")
}

async fn control_state(State(shared): S) -> Response {
    let state = lock(&shared);
    Json(json!({
        "servers": state.servers.values().collect::<Vec<_>>(),
        "snapshots": state.snapshots.values().collect::<Vec<_>>(),
        "faults": state.faults,
        "requests": state.requests,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct NewServer {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

async fn control_add_server(State(shared): S, Json(s): Json<NewServer>) -> Response {
    let mut state = lock(&shared);
    state.add_server(s.id, &s.name.unwrap_or_else(|| format!("server-{}", s.id)));
    if let (Some(status), Some(server)) = (s.status, state.servers.get_mut(&s.id)) {
        server.status = status;
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct NewSnapshot {
    server_id: u64,
    name: String,
    #[serde(default = "completed")]
    status: String,
    #[serde(default)]
    created_at: Option<chrono::DateTime<Utc>>,
}

fn completed() -> String {
    "completed".into()
}

async fn control_add_snapshot(State(shared): S, Json(s): Json<NewSnapshot>) -> Response {
    let id = lock(&shared).add_snapshot(
        s.server_id,
        &s.name,
        &s.status,
        s.created_at.unwrap_or_else(Utc::now),
    );
    Json(json!({ "id": id })).into_response()
}

async fn control_add_fault(State(shared): S, Json(f): Json<Fault>) -> Response {
    lock(&shared).faults.push(f);
    StatusCode::NO_CONTENT.into_response()
}

async fn control_clear_faults(State(shared): S) -> Response {
    lock(&shared).faults.clear();
    StatusCode::NO_CONTENT.into_response()
}
