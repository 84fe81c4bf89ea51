//! [`Resources`]: values shared with actions (HTTP clients, pools, base URLs), looked up by
//! type (DESIGN "The user's code": registered once with `Engine::builder().resource(..)`).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// Values by type. Cheap to share (held in an `Arc` by the engine and every `ActionCtx`).
#[derive(Default)]
pub(crate) struct Resources {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Resources {
    /// Adds (or replaces) the value of type `T`.
    pub(crate) fn insert<T: Any + Send + Sync>(&mut self, value: Arc<T>) {
        self.by_type.insert(TypeId::of::<T>(), value);
    }

    /// The value of type `T`, if one was added.
    pub(crate) fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.by_type
            .get(&TypeId::of::<T>())
            .and_then(|r| r.clone().downcast::<T>().ok())
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("count", &self.by_type.len())
            .finish()
    }
}
