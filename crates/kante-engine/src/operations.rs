//! Background operations: created Running, finished as Success or Failure,
//! announced on the event bus at every change and kept for a while after
//! they end so late `GET`s and `/wait`s still find them.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kante_api::operation::{Operation, OperationClass};
use kante_api::StatusCode;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use crate::error::Result;
use crate::events::Events;
use crate::ws::WsConn;

/// What can go wrong with an operation or its websockets.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("Operation not found")]
    NotFound,
    #[error("Websocket already connected")]
    SocketTaken,
    #[error("Invalid websocket secret")]
    BadSecret,
    #[error("This operation can't be cancelled")]
    NotCancellable,
}

/// How long a finished operation stays visible (LXD: 5 s; longer avoids races).
const RETENTION: Duration = Duration::from_secs(60);

pub struct Op {
    state: Mutex<Operation>,
    done: watch::Sender<bool>,
    sockets: Mutex<HashMap<String, Option<oneshot::Sender<WsConn>>>>,
    cancel: watch::Sender<bool>,
    events: Events,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Op")
            .field("id", &s.id)
            .field("description", &s.description)
            .field("status", &s.status)
            .finish()
    }
}

impl Op {
    pub fn id(&self) -> String {
        lock(&self.state).id.clone()
    }

    pub fn url(&self) -> String {
        format!("/1.0/operations/{}", self.id())
    }

    pub fn snapshot(&self) -> Operation {
        lock(&self.state).clone()
    }

    fn emit(&self, op: &Operation) {
        self.events
            .send("operation", serde_json::to_value(op).unwrap_or(Value::Null));
    }

    /// Replaces the metadata (progress, exec secrets, return code …).
    pub(crate) fn set_metadata(&self, metadata: Value) {
        let snap = {
            let mut st = lock(&self.state);
            st.metadata = metadata;
            st.updated_at = kante_api::now();
            st.clone()
        };
        self.emit(&snap);
    }

    /// Sets one key of an object metadata.
    pub(crate) fn set_metadata_key(&self, key: &str, value: Value) {
        let snap = {
            let mut st = lock(&self.state);
            if !st.metadata.is_object() {
                st.metadata = Value::Object(Default::default());
            }
            st.metadata[key] = value;
            st.updated_at = kante_api::now();
            st.clone()
        };
        self.emit(&snap);
    }

    fn finish(&self, result: &Result<()>) {
        let snap = {
            let mut st = lock(&self.state);
            let code = if result.is_ok() {
                StatusCode::Success
            } else {
                StatusCode::Failure
            };
            st.status = code.name().into();
            st.status_code = code as u16;
            st.err = result
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            st.updated_at = kante_api::now();
            st.may_cancel = false;
            st.clone()
        };
        self.emit(&snap);
        let _ = self.done.send_replace(true);
    }

    /// Waits until the operation ends, or `timeout` passes; returns its state then.
    pub(crate) async fn wait(&self, timeout: Option<Duration>) -> Operation {
        let mut rx = self.done.subscribe();
        let fut = rx.wait_for(|d| *d);
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, fut).await;
            }
            None => {
                let _ = fut.await;
            }
        }
        self.snapshot()
    }

    /// Registers a websocket the client must connect, returning its secret
    /// and where the connection will arrive.
    pub(crate) fn add_socket(&self) -> (String, oneshot::Receiver<WsConn>) {
        let secret = crate::util::random_hex(32);
        let (tx, rx) = oneshot::channel();
        lock(&self.sockets).insert(secret.clone(), Some(tx));
        (secret, rx)
    }

    /// Claims the slot for `secret` (once).
    pub(crate) fn claim_socket(&self, secret: &str) -> Result<oneshot::Sender<WsConn>> {
        let mut s = lock(&self.sockets);
        match s.get_mut(secret) {
            Some(slot) => slot
                .take()
                .ok_or_else(|| OperationError::SocketTaken.into()),
            None => Err(OperationError::BadSecret.into()),
        }
    }

    /// Lets clients cancel it (`DELETE /1.0/operations/{id}`).
    pub(crate) fn set_cancellable(&self) {
        let snap = {
            let mut st = lock(&self.state);
            st.may_cancel = true;
            st.clone()
        };
        self.emit(&snap);
    }

    /// Resolves once a client cancelled it.
    pub(crate) async fn cancelled(&self) {
        let mut rx = self.cancel.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    pub(crate) fn cancel(&self) -> Result<()> {
        if !lock(&self.state).may_cancel {
            return Err(OperationError::NotCancellable.into());
        }
        let _ = self.cancel.send_replace(true);
        Ok(())
    }
}

#[derive(Clone)]
pub struct Operations {
    ops: Arc<Mutex<HashMap<String, Arc<Op>>>>,
    events: Events,
}

/// Resource URLs of an operation: `("instances", "c1")` gives both the
/// instances and the containers URL, as LXD does for containers.
pub fn instance_resources(names: &[&str], with_containers: bool) -> BTreeMap<String, Vec<String>> {
    let mut r = BTreeMap::new();
    r.insert(
        "instances".into(),
        names
            .iter()
            .map(|n| format!("/1.0/instances/{n}"))
            .collect(),
    );
    if with_containers {
        r.insert(
            "containers".into(),
            names
                .iter()
                .map(|n| format!("/1.0/containers/{n}"))
                .collect(),
        );
    }
    r
}

impl Operations {
    pub fn new(events: Events) -> Self {
        Operations {
            ops: Arc::new(Mutex::new(HashMap::new())),
            events,
        }
    }

    pub fn create(
        &self,
        class: OperationClass,
        description: &str,
        resources: BTreeMap<String, Vec<String>>,
    ) -> Arc<Op> {
        let now = kante_api::now();
        let op = Operation {
            id: uuid::Uuid::new_v4().to_string(),
            class,
            description: description.into(),
            created_at: now,
            updated_at: now,
            status: StatusCode::Running.name().into(),
            status_code: StatusCode::Running as u16,
            resources,
            metadata: Value::Null,
            may_cancel: false,
            err: String::new(),
            location: self.events.location(),
        };
        let op = Arc::new(Op {
            state: Mutex::new(op),
            done: watch::channel(false).0,
            sockets: Mutex::new(HashMap::new()),
            cancel: watch::channel(false).0,
            events: self.events.clone(),
        });
        lock(&self.ops).insert(op.id(), op.clone());
        op.emit(&op.snapshot());
        op
    }

    /// Runs `work` in the background; its result finishes the operation.
    pub fn run<F>(&self, op: Arc<Op>, work: F)
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        let ops = self.ops.clone();
        tokio::spawn(async move {
            let result = work.await;
            if let Err(e) = &result {
                tracing::info!(op = %op.id(), description = %op.snapshot().description, "operation failed: {e}");
            }
            op.finish(&result);
            tokio::time::sleep(RETENTION).await;
            lock(&ops).remove(&op.id());
        });
    }

    pub fn get(&self, id: &str) -> Result<Arc<Op>> {
        lock(&self.ops)
            .get(id)
            .cloned()
            .ok_or_else(|| OperationError::NotFound.into())
    }

    pub fn list(&self) -> Vec<Operation> {
        let mut v: Vec<Operation> = lock(&self.ops).values().map(|o| o.snapshot()).collect();
        v.sort_by_key(|o| o.created_at);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EngineError;

    #[tokio::test]
    async fn operation_runs_to_success_and_emits_events() {
        let events = Events::new();
        let mut rx = events.subscribe();
        let ops = Operations::new(events);
        let op = ops.create(
            OperationClass::Task,
            "Testing",
            instance_resources(&["c1"], true),
        );
        assert_eq!(op.snapshot().status, "Running");
        ops.run(op.clone(), async { Ok(()) });
        let done = op.wait(Some(Duration::from_secs(5))).await;
        assert_eq!(done.status_code, 200);
        assert_eq!(done.resources["containers"], vec!["/1.0/containers/c1"]);
        // created, then final
        let first = rx.recv().await.unwrap();
        assert_eq!(first.kind, "operation");
        let last = rx.recv().await.unwrap();
        assert_eq!(last.metadata["status"], "Success");
        assert!(ops.get(&op.id()).is_ok());
        assert!(ops.get("nope").is_err());
    }

    #[tokio::test]
    async fn failure_carries_the_error_and_wait_times_out() {
        let ops = Operations::new(Events::new());
        let op = ops.create(OperationClass::Task, "Failing", BTreeMap::new());
        let snap = op.wait(Some(Duration::from_millis(10))).await;
        assert_eq!(snap.status, "Running");
        ops.run(op.clone(), async {
            Err(EngineError::BadRequest(
                "The instance is already running".into(),
            ))
        });
        let done = op.wait(None).await;
        assert_eq!(done.status, "Failure");
        assert_eq!(done.status_code, 400);
        assert_eq!(done.err, "The instance is already running");
    }

    #[tokio::test]
    async fn wait_after_the_end_returns_at_once() {
        // Nobody waits while it finishes; a later /wait must still see the end.
        let ops = Operations::new(Events::new());
        let op = ops.create(OperationClass::Task, "Quick", BTreeMap::new());
        ops.run(op.clone(), async { Ok(()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let done = tokio::time::timeout(Duration::from_secs(2), op.wait(None))
            .await
            .expect("wait returned");
        assert_eq!(done.status, "Success");
    }

    #[tokio::test]
    async fn sockets_are_claimed_once_by_secret() {
        let ops = Operations::new(Events::new());
        let op = ops.create(
            OperationClass::Websocket,
            "Executing command",
            BTreeMap::new(),
        );
        let (secret, _rx) = op.add_socket();
        assert!(op.claim_socket("wrong").is_err());
        assert!(op.claim_socket(&secret).is_ok());
        assert!(matches!(
            op.claim_socket(&secret),
            Err(EngineError::Operation(OperationError::SocketTaken))
        ));
    }
}
