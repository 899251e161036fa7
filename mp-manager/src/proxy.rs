//! Proxies: [`Proxy`] (CPython's `BaseProxy`: a token, a client, and
//! `_callmethod`) and the [`ProxyType`] trait of the typed proxies built on
//! it.
//!
//! A proxy is a handle: cloning it is cheap and shares it; the process
//! holds one server reference per object however many handles it has, and
//! gives it back when the last handle goes.
//!
//! A proxy is a serde type; its form is CPython's `RebuildProxy(func,
//! token, serializer, kwds)`. Inside a request to its own manager (a proxy
//! stored in a shared dict) the server tracks it. Serialized to bytes (a
//! process argument, a message on a pipe) it first takes a *transfer*
//! reference on a Rust server, which the receiving process claims when it
//! rebuilds the proxy, so the object cannot be freed in between; as a
//! process argument under spawn or forkserver it also carries the
//! manager's key, as CPython's does while spawning. Turned into a
//! [`Value`] with `mp_value::to_value` it takes nothing: a value stays in
//! this process (one stored in *another* manager does not keep the object
//! alive).

use std::fmt;
use std::sync::Arc;

use mp_value::{Dict, Tuple, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::client::{self, Client};
use crate::codec::codec_by_name;
use crate::error::{Error, Result};
use crate::wire::{RebuildProxy, Reply, Token};

/// The keyword of `RebuildProxy` that carries our transfer key; only
/// proxies of postcard managers carry it (a CPython process never sees
/// them), so CPython's `BaseProxy.__init__` never meets the keyword.
const TRANSFER_KWD: &str = "mp_rs_transfer";

struct Inner {
    client: Arc<Client>,
    token: Token,
    ident: Arc<str>,
    /// `token.id` as a value, for requests.
    id_value: Value,
    exposed: Option<Arc<[String]>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.client.release(&self.ident);
    }
}

/// A proxy to a shared object (CPython's `BaseProxy`), untyped: calls go
/// by method name with serde arguments. The typed proxies
/// ([`DictProxy`](crate::DictProxy), …) wrap one.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
    /// The CPython proxy class this proxy is pickled as.
    class: &'static str,
}

impl fmt::Debug for Proxy {
    /// CPython's proxy `repr`: `<DictProxy object, typeid 'dict' at 0x…>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{} object, typeid '{}' at {:#x}>",
            self.class,
            self.inner.token.typeid,
            Arc::as_ptr(&self.inner) as usize
        )
    }
}

impl Proxy {
    /// A handle whose server reference the process already has.
    pub(crate) fn adopted(
        client: Arc<Client>,
        token: Token,
        exposed: Option<Vec<String>>,
        class: &'static str,
    ) -> Result<Proxy> {
        let ident: Arc<str> = token.id.as_str().into();
        client.adopt(&ident)?;
        Ok(Proxy::from_parts(client, token, ident, exposed, class))
    }

    /// A handle whose reference the client has already counted (`create`).
    pub(crate) fn held(
        client: Arc<Client>,
        token: Token,
        exposed: Option<Vec<String>>,
        class: &'static str,
    ) -> Proxy {
        let ident: Arc<str> = token.id.as_str().into();
        Proxy::from_parts(client, token, ident, exposed, class)
    }

    fn from_parts(
        client: Arc<Client>,
        token: Token,
        ident: Arc<str>,
        exposed: Option<Vec<String>>,
        class: &'static str,
    ) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                client,
                id_value: Value::Str(Arc::clone(&ident)),
                ident,
                token,
                exposed: exposed.map(Into::into),
            }),
            class,
        }
    }

    /// The token: type id, manager address and object id.
    pub fn token(&self) -> &Token {
        &self.inner.token
    }

    /// The methods the server said this proxy may call, when it said
    /// (`create` and `#PROXY` replies carry them).
    pub fn exposed(&self) -> Option<&[String]> {
        self.inner.exposed.as_deref()
    }

    /// The CPython proxy class this proxy stands for (`"DictProxy"`,
    /// `"AutoProxy"`, …).
    pub fn class(&self) -> &'static str {
        self.class
    }

    /// The same proxy as another class (for the typed proxies).
    pub(crate) fn with_class(mut self, class: &'static str) -> Proxy {
        self.class = class;
        self
    }

    /// Calls `method` with `args` (a tuple: `()`, `(x,)`, `(x, y)`) and
    /// keyword arguments `kwds`, and returns the raw reply (CPython's
    /// `_callmethod`).
    fn raw_call(&self, method: &str, args: &impl Serialize, kwds: Dict) -> Result<Reply> {
        let client = &self.inner.client;
        let args = client::encoding(client, || mp_value::to_value(args))?;
        let args = match args {
            Value::Tuple(t) => Value::Tuple(t),
            Value::None => Value::Tuple(Tuple::new()),
            one => Value::Tuple(Tuple::from(vec![one])),
        };
        client.call(&self.inner.id_value, method, args, kwds)
    }

    /// Calls `method` and converts the result to `R` (`Value` keeps it as
    /// it came).
    ///
    /// # Errors
    ///
    /// [`Error::Raised`] with the referent's exception, [`Error::Remote`]
    /// for a failure in the manager (an unexposed method, say),
    /// [`Error::Convert`] when the result does not fit `R`, and connection
    /// errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_manager::ProxyType;
    /// # mp_context::init();
    /// let manager = mp_manager::SyncManager::started(&mp_context::get_context(Some("fork"))?)?;
    /// let d = manager.dict::<String, i64>()?;
    /// d.proxy().call::<()>("__setitem__", &("a", 1))?;
    /// assert_eq!(d.proxy().call::<i64>("__getitem__", &("a",))?, 1);
    /// assert!(d.proxy().call::<i64>("__getitem__", &("b",)).unwrap_err().is("KeyError"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call<R: DeserializeOwned>(&self, method: &str, args: &impl Serialize) -> Result<R> {
        self.call_kw(method, args, Dict::new())
    }

    /// [`Proxy::call`] with keyword arguments.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn call_kw<R: DeserializeOwned>(
        &self,
        method: &str,
        args: &impl Serialize,
        kwds: Dict,
    ) -> Result<R> {
        let reply = self.raw_call(method, args, kwds)?;
        self.convert(reply)
    }

    /// Converts a reply's value, rebuilding the proxies inside it as
    /// proxies of this manager.
    pub(crate) fn convert<R: DeserializeOwned>(&self, reply: Reply) -> Result<R> {
        let client = &self.inner.client;
        match reply {
            Reply::Proxy { exposed, token } => {
                // A proxy where a value was asked for: give it as a value
                // (an untyped proxy).
                let p = self.proxy_from_reply(exposed, token, "AutoProxy")?;
                let v = client::encoding(client, || mp_value::to_value(&p))?;
                Ok(client::decoding(client, || mp_value::from_value(&v))?)
            }
            other => {
                let v = client::reply_value(other)?;
                Ok(client::decoding(client, || mp_value::from_value(&v))?)
            }
        }
    }

    /// Calls a method that returns a new shared object (`method_to_typeid`),
    /// as a proxy of type `P`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`], and [`Error::Protocol`] if the server sent a
    /// value instead.
    pub fn call_proxy<P: ProxyType>(&self, method: &str, args: &impl Serialize) -> Result<P> {
        match self.raw_call(method, args, Dict::new())? {
            Reply::Proxy { exposed, token } => Ok(P::from_proxy(self.proxy_from_reply(
                exposed,
                token,
                P::CLASS,
            )?)),
            other => {
                let v = client::reply_value(other)?;
                // A proxy inside a value (a stored proxy) works too.
                Ok(client::decoding(&self.inner.client, || {
                    mp_value::from_value::<P>(&v)
                })?)
            }
        }
    }

    fn proxy_from_reply(
        &self,
        exposed: Vec<String>,
        mut token: Token,
        class: &'static str,
    ) -> Result<Proxy> {
        // As CPython's `_callmethod`: the token's address is the one we
        // reach the server at.
        token.address = self.inner.client.address.clone();
        Proxy::adopted(Arc::clone(&self.inner.client), token, Some(exposed), class)
    }

    /// A copy of the referent (CPython's `_getvalue()`).
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`]; [`Error::Remote`] for an object that has no
    /// value to copy (a lock).
    pub fn get_value<R: DeserializeOwned>(&self) -> Result<R> {
        self.call("#GETVALUE", &())
    }

    /// The referent's `repr()`, as CPython's `str(proxy)` gives it.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn referent_repr(&self) -> Result<String> {
        self.call("__repr__", &())
    }

    /// The referent's `str()`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn referent_str(&self) -> Result<String> {
        self.call("__str__", &())
    }

    /// Rebuilds a proxy from its value form (`RebuildProxy(...)` or a bare
    /// token), taking (or claiming) the process's reference.
    pub(crate) fn from_value(value: &Value, class: Option<&'static str>) -> Result<Proxy> {
        let rp = match RebuildProxy::from_value(value) {
            Some(rp) => rp,
            None => match Token::from_value(value) {
                Some(token) => RebuildProxy {
                    func: "AutoProxy".into(),
                    token,
                    serializer: "postcard".to_owned(),
                    kwds: Dict::new(),
                },
                None => {
                    return Err(Error::Protocol(format!("{value} is not a proxy")));
                }
            },
        };
        let client = client::decoding_client()
            .filter(|c| c.owns(&rp.token))
            .or_else(|| Client::find(&rp.token));
        let client = match client {
            Some(c) => c,
            None => {
                let authkey = match rp.kwd("authkey") {
                    Some(Value::Bytes(b)) => b.to_vec(),
                    _ => mp_context::current_process().authkey().to_vec(),
                };
                let codec = codec_by_name(&rp.serializer).ok_or_else(|| {
                    Error::Protocol(format!(
                        "a proxy for the codec {:?}, which this process does not know",
                        rp.serializer
                    ))
                })?;
                Client::get(&rp.token.address, &authkey, &codec)
            }
        };
        let ident: Arc<str> = rp.token.id.as_str().into();
        match rp.kwd(TRANSFER_KWD).and_then(Value::as_i64) {
            Some(key) => client.claim(&ident, key)?,
            None => client.acquire(&ident)?,
        }
        let exposed = rp.kwd("exposed").and_then(Value::as_seq).map(|e| {
            e.iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        });
        let class = class.unwrap_or_else(|| known_class(&rp.func));
        Ok(Proxy::from_parts(client, rp.token, ident, exposed, class))
    }

    /// The proxy's value form (see the module docs).
    fn to_rebuild(&self) -> Result<RebuildProxy> {
        let inner = &self.inner;
        let mut kwds = Dict::new();
        if let Some(e) = &inner.exposed
            && self.class == "AutoProxy"
        {
            let names: Vec<Value> = e.iter().map(|m| Value::from(m.as_str())).collect();
            kwds.insert("exposed", Value::Tuple(Tuple::from(names)))?;
        }
        if mp_reduction::collecting() {
            kwds.insert(
                "authkey",
                Value::Bytes(inner.client.authkey.as_slice().into()),
            )?;
        }
        // Bytes may travel to another process: keep the object alive until
        // it is rebuilt there. A value (to_value) stays in this process,
        // and inside a request to our own manager the server tracks it.
        let travels = !mp_value::in_to_value();
        if travels
            && !client::encoding_for(&inner.client)
            && inner.client.codec.name() == "postcard"
            && let Some(key) = inner.client.transfer(&inner.ident)?
        {
            kwds.insert(TRANSFER_KWD, key)?;
        }
        Ok(RebuildProxy {
            func: self.class.to_owned(),
            token: inner.token.clone(),
            serializer: inner.client.codec.name().to_owned(),
            kwds,
        })
    }
}

/// The `&'static` name of a CPython proxy class we know, else `AutoProxy`.
fn known_class(name: &str) -> &'static str {
    const CLASSES: &[&str] = &[
        "AutoProxy",
        "DictProxy",
        "ListProxy",
        "ValueProxy",
        "NamespaceProxy",
        "ArrayProxy",
        "AcquirerProxy",
        "ConditionProxy",
        "EventProxy",
        "BarrierProxy",
        "IteratorProxy",
        "SetProxy",
        "PoolProxy",
    ];
    CLASSES
        .iter()
        .find(|c| **c == name)
        .copied()
        .unwrap_or("AutoProxy")
}

impl Serialize for Proxy {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let rp = self.to_rebuild().map_err(serde::ser::Error::custom)?;
        rp.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Proxy, D::Error> {
        let v = Value::deserialize(d)?;
        Proxy::from_value(&v, None).map_err(serde::de::Error::custom)
    }
}

/// A typed proxy: a [`Proxy`] with methods of its own.
pub trait ProxyType: Sized + Serialize + DeserializeOwned {
    /// The CPython proxy class it corresponds to (`"DictProxy"`, …).
    const CLASS: &'static str;

    /// Wraps an untyped proxy.
    fn from_proxy(proxy: Proxy) -> Self;

    /// The untyped proxy inside.
    fn proxy(&self) -> &Proxy;
}

impl ProxyType for Proxy {
    const CLASS: &'static str = "AutoProxy";
    fn from_proxy(proxy: Proxy) -> Proxy {
        proxy
    }
    fn proxy(&self) -> &Proxy {
        self
    }
}

/// Defines a typed proxy struct over [`Proxy`]: the struct, `ProxyType`,
/// serde, `Clone` and `Debug`.
#[macro_export]
#[doc(hidden)]
macro_rules! __proxy_type {
    ($(#[$doc:meta])* $name:ident $(<$($t:ident),*>)?, $class:literal) => {
        $(#[$doc])*
        pub struct $name $(<$($t),*>)? {
            proxy: $crate::Proxy,
            $(_types: ::std::marker::PhantomData<fn() -> ($($t,)*)>,)?
        }

        impl $(<$($t),*>)? $crate::ProxyType for $name $(<$($t),*>)? {
            const CLASS: &'static str = $class;
            fn from_proxy(proxy: $crate::Proxy) -> Self {
                $name {
                    proxy: $crate::__private::with_class(proxy, $class),
                    $(_types: ::std::marker::PhantomData::<fn() -> ($($t,)*)>,)?
                }
            }
            fn proxy(&self) -> &$crate::Proxy {
                &self.proxy
            }
        }

        impl $(<$($t),*>)? ::std::clone::Clone for $name $(<$($t),*>)? {
            fn clone(&self) -> Self {
                $name {
                    proxy: self.proxy.clone(),
                    $(_types: ::std::marker::PhantomData::<fn() -> ($($t,)*)>,)?
                }
            }
        }

        impl $(<$($t),*>)? ::std::fmt::Debug for $name $(<$($t),*>)? {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&self.proxy, f)
            }
        }

        impl $(<$($t),*>)? $crate::__private::serde::Serialize for $name $(<$($t),*>)? {
            fn serialize<S: $crate::__private::serde::Serializer>(
                &self,
                s: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                $crate::__private::serde::Serialize::serialize(&self.proxy, s)
            }
        }

        impl<'de $($(, $t)*)?> $crate::__private::serde::Deserialize<'de> for $name $(<$($t),*>)? {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let proxy = $crate::__private::deserialize_as(d, $class)?;
                Ok(<Self as $crate::ProxyType>::from_proxy(proxy))
            }
        }
    };
}

/// Support for the macros (not public API).
#[doc(hidden)]
pub(crate) mod private {
    pub use serde;

    use super::Proxy;

    /// `proxy` as class `class`.
    pub fn with_class(proxy: Proxy, class: &'static str) -> Proxy {
        proxy.with_class(class)
    }

    /// Deserializes a proxy of class `class`.
    pub fn deserialize_as<'de, D: serde::Deserializer<'de>>(
        d: D,
        class: &'static str,
    ) -> Result<Proxy, D::Error> {
        let v = <mp_value::Value as serde::Deserialize>::deserialize(d)?;
        Proxy::from_value(&v, Some(class)).map_err(serde::de::Error::custom)
    }
}
