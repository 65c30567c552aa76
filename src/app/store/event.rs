//! What a store keeps and promises: events, what an insert did, why a
//! store could not answer, and the [`Store`] trait every store implements.

use serde::Serialize;

/// One stored event.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct Event {
    /// Assigned by the store, increasing.
    pub id: i64,
    /// The event type given by the client.
    #[serde(rename = "type")]
    pub kind: String,
    /// The JSON object given by the client.
    pub payload: serde_json::Value,
    /// When the store committed it, RFC 3339 in UTC.
    pub received_at: String,
}

/// An event to store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewEvent {
    /// The event type.
    pub kind: String,
    /// A JSON object.
    pub payload: serde_json::Value,
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Inserted {
    /// A new row was committed.
    Created(Event),
    /// The idempotency key was seen before with the same event: this is
    /// the first result.
    Replayed(Event),
    /// The idempotency key was seen before with a different event.
    KeyConflict,
}

/// Why the store could not answer.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum StoreError {
    /// The database cannot be reached or failed; safe to retry later.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(detail) => write!(f, "store unavailable: {detail}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Storage of events, shared by every worker.
pub(crate) trait Store: Send + Sync + std::fmt::Debug {
    /// Stores an event, once per idempotency key when one is given. Returns
    /// only after the row is committed.
    fn insert(
        &self,
        event: &NewEvent,
        idempotency_key: Option<&str>,
    ) -> Result<Inserted, StoreError>;
    /// One event by id.
    fn get(&self, id: i64) -> Result<Option<Event>, StoreError>;
    /// Up to `limit` events with ids above `after`, in id order.
    fn list(&self, after: i64, limit: u32) -> Result<Vec<Event>, StoreError>;
    /// A cheap check that the store can answer now.
    fn check(&self) -> Result<(), StoreError>;
}
