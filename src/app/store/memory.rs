//! The built-in in-memory store: for trying the service and for tests;
//! nothing outlives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::event::{Event, Inserted, NewEvent, Store, StoreError};
use crate::sync;

#[derive(Debug, Default)]
struct Tables {
    events: BTreeMap<i64, Event>,
    by_key: HashMap<String, i64>,
    last_id: i64,
}

/// Events in a map, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        sync::lock(&self.tables)
    }
}

impl Store for MemoryStore {
    fn insert(
        &self,
        event: &NewEvent,
        idempotency_key: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        let mut tables = self.tables();
        if let Some(existing) = idempotency_key.and_then(|key| tables.by_key.get(key)) {
            let first = tables.events[existing].clone();
            let same = first.kind == event.kind && first.payload == event.payload;
            return Ok(if same {
                Inserted::Replayed(first)
            } else {
                Inserted::KeyConflict
            });
        }
        tables.last_id += 1;
        let stored = Event {
            id: tables.last_id,
            kind: event.kind.clone(),
            payload: event.payload.clone(),
            received_at: now_rfc3339(),
        };
        if let Some(key) = idempotency_key {
            tables.by_key.insert(key.to_owned(), stored.id);
        }
        tables.events.insert(stored.id, stored.clone());
        Ok(Inserted::Created(stored))
    }

    fn get(&self, id: i64) -> Result<Option<Event>, StoreError> {
        Ok(self.tables().events.get(&id).cloned())
    }

    fn list(&self, after: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let tables = self.tables();
        let start = after.saturating_add(1);
        Ok(tables
            .events
            .range(start..)
            .take(limit as usize)
            .map(|(_, event)| event.clone())
            .collect())
    }

    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Now, in RFC 3339 with microseconds, UTC.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str) -> NewEvent {
        NewEvent {
            kind: kind.into(),
            payload: serde_json::json!({"n": 1}),
        }
    }

    #[test]
    fn idempotency_key_returns_the_first_result() {
        let store = MemoryStore::default();
        let Ok(Inserted::Created(first)) = store.insert(&event("a"), Some("k")) else {
            panic!("created")
        };
        assert_eq!(
            store.insert(&event("a"), Some("k")).ok(),
            Some(Inserted::Replayed(first))
        );
        assert_eq!(
            store.insert(&event("b"), Some("k")).ok(),
            Some(Inserted::KeyConflict)
        );
        assert_eq!(store.list(0, 10).map(|events| events.len()).ok(), Some(1));
    }

    #[test]
    fn list_pages_after_an_id() {
        let store = MemoryStore::default();
        for _ in 0..5 {
            store.insert(&event("a"), None).expect("insert");
        }
        let page: Vec<i64> = store
            .list(2, 2)
            .expect("list")
            .iter()
            .map(|event| event.id)
            .collect();
        assert_eq!(page, [3, 4]);
    }
}
