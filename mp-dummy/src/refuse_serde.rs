//! With the `serde` feature: the thread objects are serde types that
//! refuse to be serialized or deserialized, as CPython's threading
//! objects refuse to be pickled (`TypeError: cannot pickle
//! '_thread.lock' object`).
//!
//! Why have the impls at all: generic code over both backends (the
//! `multiprocessing` crate's `backend` module) passes its objects as
//! process arguments, which the process backend serializes; the bound
//! must hold for the thread objects too, whose backend never serializes
//! them (a thread takes its arguments as they are). Sent to a real
//! process by mistake, they fail with this message instead of sharing
//! nothing silently.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser};

use crate::{
    Array, Barrier, BoundedSemaphore, Condition, Connection, DictProxy, DummyProcess, Event,
    JoinableQueue, ListProxy, Lock, Namespace, Queue, RLock, Semaphore, SimpleQueue, Value,
};

fn message(what: &str) -> String {
    format!(
        "cannot serialize a thread-backed {what} (mp-dummy): it lives in one process; use the process-backed one to share it between processes"
    )
}

macro_rules! refuse {
    ($name:ident $(<$($t:ident),*>)?) => {
        impl$(<$($t),*>)? Serialize for $name$(<$($t),*>)? {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(ser::Error::custom(message(stringify!($name))))
            }
        }

        impl<'de $($(, $t)*)?> Deserialize<'de> for $name$(<$($t),*>)? {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                Err(de::Error::custom(message(stringify!($name))))
            }
        }
    };
}

refuse!(Lock);
refuse!(RLock);
refuse!(Semaphore);
refuse!(BoundedSemaphore);
refuse!(Condition);
refuse!(Event);
refuse!(Barrier);
refuse!(Namespace);
refuse!(DummyProcess);
refuse!(Queue<T>);
refuse!(JoinableQueue<T>);
refuse!(SimpleQueue<T>);
refuse!(Value<T>);
refuse!(Array<T>);
refuse!(ListProxy<T>);
refuse!(DictProxy<K, V>);
refuse!(Connection<T>);

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde::de::value::{Error, UnitDeserializer};

    #[test]
    fn a_thread_object_refuses_serde_and_says_why() {
        assert!(postcard::to_allocvec(&crate::Lock::new()).is_err());
        assert!(postcard::to_allocvec(&crate::Queue::<u32>::new(0)).is_err());
        let e = crate::Lock::deserialize(UnitDeserializer::<Error>::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot serialize a thread-backed Lock (mp-dummy)"),
            "{e}"
        );
    }
}
