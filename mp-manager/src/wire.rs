//! The manager protocol's messages as [`Value`]s, in CPython's shapes.
//!
//! After the mutual HMAC handshake every frame holds one message, encoded
//! by the manager's codec:
//!
//! ```text
//! request  (id, methodname, args, kwds)   id: str (an object) or None (a
//!                                         public function of the server)
//! reply    ('#RETURN', value)
//!          ('#ERROR', exception)          the referent's own exception
//!          ('#TRACEBACK', text)           raised as RemoteError
//!          ('#PROXY', (exposed, token))   a new proxy (method_to_typeid)
//!          ('#UNSERIALIZABLE', text)      the result could not be encoded
//! ```
//!
//! A `Token` is `multiprocessing.managers.Token`: pickle's `NEWOBJ` of that
//! class with `BUILD` state `(typeid, address, id)`; an address is
//! `(host, port)` for TCP and a `str` path for AF_UNIX (an abstract name
//! starts with NUL). A proxy inside a value is CPython's
//! `RebuildProxy(func, token, serializer, kwds)` (a `REDUCE`), `func` being
//! the proxy class (`DictProxy`, `AutoProxy`, …).

use std::net::SocketAddr;
use std::path::PathBuf;

use mp_conn::Address;
use mp_value::{Constructor, Dict, Global, Object, Tuple, Value};

use crate::error::Exception;

/// The module of CPython's manager classes.
pub(crate) const MODULE: &str = "multiprocessing.managers";

/// `#RETURN`.
pub(crate) const RETURN: &str = "#RETURN";
/// `#ERROR`.
pub(crate) const ERROR: &str = "#ERROR";
/// `#TRACEBACK`.
pub(crate) const TRACEBACK: &str = "#TRACEBACK";
/// `#PROXY`.
pub(crate) const PROXY: &str = "#PROXY";
/// `#UNSERIALIZABLE`.
pub(crate) const UNSERIALIZABLE: &str = "#UNSERIALIZABLE";

/// Identifies a shared object: its type id, the address of its manager,
/// and its id there (CPython's `multiprocessing.managers.Token`, with the
/// same three fields).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Token {
    /// The registered type id (`"dict"`, `"Queue"`, a user's name).
    pub typeid: String,
    /// The address of the manager that holds the object.
    pub address: Address,
    /// The object's id in that manager (a string, as CPython's are).
    pub id: String,
}

impl Token {
    /// The token as CPython pickles it: `Token.__new__(Token)` with state
    /// `(typeid, address, id)`.
    pub fn to_value(&self) -> Value {
        Value::Object(
            Object::new_obj(Global::new(MODULE, "Token"), Value::Tuple(Tuple::new())).with_state(
                Value::from((
                    self.typeid.as_str(),
                    address_to_value(&self.address),
                    self.id.as_str(),
                )),
            ),
        )
    }

    /// Reads a token back (the shape of [`Token::to_value`]); `None` for
    /// anything else.
    pub fn from_value(value: &Value) -> Option<Token> {
        let Value::Object(o) = value else { return None };
        if !o.global()?.is(MODULE, "Token") {
            return None;
        }
        let state = o.state()?.as_seq()?;
        let [typeid, address, id] = state else {
            return None;
        };
        Some(Token {
            typeid: typeid.as_str()?.to_owned(),
            address: address_from_value(address)?,
            id: id.as_str()?.to_owned(),
        })
    }
}

/// An address as CPython's `Listener.address`: `(host, port)` or a path.
pub(crate) fn address_to_value(address: &Address) -> Value {
    match address {
        Address::Inet(a) => Value::from((a.ip().to_string(), a.port())),
        Address::Unix(p) => Value::from(p.to_string_lossy().into_owned()),
        Address::Abstract(name) => match std::str::from_utf8(name) {
            Ok(s) => Value::from(format!("\0{s}")),
            Err(_) => {
                let mut b = vec![0];
                b.extend_from_slice(name);
                Value::Bytes(b.into())
            }
        },
    }
}

/// The inverse of [`address_to_value`]; also accepts a host name (resolved
/// as a client would) and a `bytes` path.
pub(crate) fn address_from_value(value: &Value) -> Option<Address> {
    if let Some(pair) = value.as_seq() {
        let [host, port] = pair else { return None };
        let host = host.as_str()?;
        let port = u16::try_from(port.as_i64()?).ok()?;
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Some(Address::Inet(SocketAddr::new(ip, port)));
        }
        return format!("{host}:{port}").parse().ok();
    }
    match value {
        Value::Str(s) => match s.strip_prefix('\0') {
            Some(name) => Some(Address::Abstract(name.as_bytes().to_vec())),
            None => Some(Address::Unix(PathBuf::from(&**s))),
        },
        Value::Bytes(b) => match b.strip_prefix(&[0]) {
            Some(name) => Some(Address::Abstract(name.to_vec())),
            None => Some(Address::Unix(PathBuf::from(
                String::from_utf8_lossy(b).into_owned(),
            ))),
        },
        _ => None,
    }
}

/// A proxy inside a value: `RebuildProxy(func, token, serializer, kwds)`.
#[derive(Clone, Debug)]
pub(crate) struct RebuildProxy {
    /// The proxy class's name in `multiprocessing.managers`.
    pub(crate) func: String,
    pub(crate) token: Token,
    pub(crate) serializer: String,
    /// `exposed`, `authkey`, and our `transfer` key.
    pub(crate) kwds: Dict,
}

impl RebuildProxy {
    pub(crate) fn to_value(&self) -> Value {
        Value::Object(Object::reduce(
            Global::new(MODULE, "RebuildProxy"),
            Value::from((
                Value::Global(Global::new(MODULE, self.func.as_str())),
                self.token.to_value(),
                self.serializer.as_str(),
                Value::Dict(self.kwds.clone()),
            )),
        ))
    }

    pub(crate) fn from_value(value: &Value) -> Option<RebuildProxy> {
        let Value::Object(o) = value else { return None };
        if o.constructor() != Constructor::Reduce || !o.global()?.is(MODULE, "RebuildProxy") {
            return None;
        }
        let [func, token, serializer, kwds] = o.args().as_seq()? else {
            return None;
        };
        let func = match func {
            Value::Global(g) => g.name().to_owned(),
            _ => return None,
        };
        let kwds = match kwds {
            Value::Dict(d) => d.clone(),
            _ => Dict::new(),
        };
        Some(RebuildProxy {
            func,
            token: Token::from_value(token)?,
            serializer: serializer.as_str()?.to_owned(),
            kwds,
        })
    }

    pub(crate) fn kwd(&self, name: &str) -> Option<&Value> {
        self.kwds.get(&Value::from(name)).ok().flatten()
    }
}

/// Calls `f` with the id of every token inside `value`: bare tokens and the
/// tokens of `RebuildProxy` objects, at any depth (iteratively).
pub(crate) fn for_each_token(value: &Value, f: &mut dyn FnMut(&Token)) {
    // Most arguments and results are scalars: no work list for them (this
    // runs on every call's arguments and reply).
    if !value.holds_values() {
        return;
    }
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::List(items) => stack.extend(items.iter()),
            Value::Tuple(items) => stack.extend(items.iter()),
            Value::Dict(d) => {
                for (k, v) in d.iter() {
                    stack.push(k);
                    stack.push(v);
                }
            }
            Value::Set(s) | Value::FrozenSet(s) => stack.extend(s.iter()),
            Value::Object(o) => {
                if let Some(g) = o.global()
                    && g.module() == MODULE
                {
                    if g.name() == "Token" {
                        if let Some(t) = Token::from_value(v) {
                            f(&t);
                        }
                        continue;
                    }
                    if g.name() == "RebuildProxy" {
                        if let Some(rp) = RebuildProxy::from_value(v) {
                            f(&rp.token);
                        }
                        continue;
                    }
                }
                stack.push(o.args());
                if let Some(k) = o.kwargs() {
                    stack.push(k);
                }
                for op in o.ops() {
                    match op {
                        mp_value::ObjectOp::Append(items) => stack.extend(items.iter()),
                        mp_value::ObjectOp::SetItems(pairs) => {
                            for (k, v) in pairs {
                                stack.push(k);
                                stack.push(v);
                            }
                        }
                        mp_value::ObjectOp::Build(s) => stack.push(s),
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether `value` holds any token (the common case, no, is cheap: small
/// argument tuples of numbers and strings).
pub(crate) fn has_token(value: &Value) -> bool {
    let mut found = false;
    for_each_token(value, &mut |_| found = true);
    found
}

/// A decoded request.
#[derive(Debug)]
pub(crate) struct Request {
    /// The object's id, or `None` for a public function of the server.
    pub(crate) ident: Option<std::sync::Arc<str>>,
    pub(crate) method: std::sync::Arc<str>,
    pub(crate) args: Vec<Value>,
    pub(crate) kwds: Dict,
}

impl Request {
    /// Reads `(id, methodname, args, kwds)`, with errors in the words of
    /// the Python that would fail on the same message.
    pub(crate) fn from_value(value: Value) -> Result<Request, String> {
        let items = match value {
            // A request the reader just made is its only holder: its items
            // move out without a copy.
            Value::Tuple(t) => t.into_vec(),
            Value::List(l) => l.into_vec(),
            other => {
                return Err(format!(
                    "TypeError: cannot unpack non-iterable {} object",
                    other.type_name()
                ));
            }
        };
        let [ident, method, args, kwds] = match <[Value; 4]>::try_from(items) {
            Ok(four) => four,
            Err(items) => {
                return Err(format!(
                    "ValueError: expected 4 values to unpack (got {})",
                    items.len()
                ));
            }
        };
        let ident = match ident {
            Value::None => None,
            Value::Str(s) => Some(s),
            other => return Err(format!("KeyError: {other}")),
        };
        let method = match method {
            Value::Str(s) => s,
            other => {
                return Err(format!(
                    "TypeError: attribute name must be string, not '{}'",
                    other.type_name()
                ));
            }
        };
        let args = match args {
            Value::Tuple(t) => t.into_vec(),
            Value::List(l) => l.into_vec(),
            other => {
                return Err(format!(
                    "TypeError: argument after * must be an iterable, not {}",
                    other.type_name()
                ));
            }
        };
        let kwds = match kwds {
            Value::Dict(d) => {
                if d.keys().any(|k| !matches!(k, Value::Str(_))) {
                    return Err("TypeError: keywords must be strings".into());
                }
                d
            }
            other => {
                return Err(format!(
                    "TypeError: argument after ** must be a mapping, not {}",
                    other.type_name()
                ));
            }
        };
        Ok(Request {
            ident,
            method,
            args,
            kwds,
        })
    }
}

/// Builds a request message.
pub(crate) fn request(ident: Option<&Value>, method: Value, args: Value, kwds: Value) -> Value {
    Value::Tuple(Tuple::from(vec![
        ident.cloned().unwrap_or(Value::None),
        method,
        args,
        kwds,
    ]))
}

/// A decoded reply.
#[derive(Debug)]
pub(crate) enum Reply {
    Return(Value),
    Error(Exception),
    Traceback(String),
    Proxy { exposed: Vec<String>, token: Token },
    Unserializable(String),
}

impl Reply {
    pub(crate) fn from_value(value: Value) -> Result<Reply, String> {
        let Some([kind, payload]) = value.as_seq().and_then(|s| <&[Value; 2]>::try_from(s).ok())
        else {
            return Err(format!("a reply is a (kind, payload) pair, got {value}"));
        };
        let text = |p: &Value| -> Result<String, String> {
            p.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("Result {p} (kind '{kind}') type is not str"))
        };
        match kind.as_str() {
            Some(RETURN) => Ok(Reply::Return(payload.clone())),
            Some(ERROR) => Ok(Reply::Error(Exception::from_value(payload).unwrap_or_else(
                || Exception::new("builtins", "Exception", vec![payload.clone()]),
            ))),
            Some(TRACEBACK) => Ok(Reply::Traceback(text(payload)?)),
            Some(UNSERIALIZABLE) => Ok(Reply::Unserializable(text(payload)?)),
            Some(PROXY) => {
                let parts = payload.as_seq().filter(|p| p.len() == 2);
                let parts = parts.ok_or_else(|| format!("bad #PROXY payload {payload}"))?;
                let exposed = parts[0]
                    .as_seq()
                    .map(|e| {
                        e.iter()
                            .filter_map(|m| m.as_str().map(str::to_owned))
                            .collect()
                    })
                    .ok_or_else(|| format!("bad exposed list {}", parts[0]))?;
                let token = Token::from_value(&parts[1])
                    .ok_or_else(|| format!("bad token {}", parts[1]))?;
                Ok(Reply::Proxy { exposed, token })
            }
            _ => Err(format!("Unrecognized message type {kind}")),
        }
    }
}

/// `(kind, payload)`.
pub(crate) fn reply(kind: &str, payload: Value) -> Value {
    // The kinds are made once: a reply per call allocates no string.
    static KINDS: std::sync::OnceLock<[Value; 5]> = std::sync::OnceLock::new();
    let kinds =
        KINDS.get_or_init(|| [RETURN, ERROR, TRACEBACK, PROXY, UNSERIALIZABLE].map(Value::from));
    let kind = kinds
        .iter()
        .find(|k| k.as_str() == Some(kind))
        .cloned()
        .unwrap_or_else(|| Value::from(kind));
    Value::Tuple(Tuple::from(vec![kind, payload]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_proxies_keep_cpython_shapes() {
        let token = Token {
            typeid: "Queue".into(),
            address: "127.0.0.1:50000".parse().unwrap(),
            id: "7ff4abe09210".into(),
        };
        let v = token.to_value();
        assert_eq!(Token::from_value(&v).unwrap(), token);
        let rp = RebuildProxy {
            func: "AutoProxy".into(),
            token: token.clone(),
            serializer: "pickle".into(),
            kwds: Dict::new(),
        };
        let found = RebuildProxy::from_value(&rp.to_value()).unwrap();
        assert_eq!(found.token, token);
        let nested = Value::from(vec![Value::from((1, rp.to_value())), v]);
        let mut ids = Vec::new();
        for_each_token(&nested, &mut |t| ids.push(t.id.clone()));
        assert_eq!(ids.len(), 2);
        assert!(!has_token(&Value::from((1, "a"))));
        let unix = Address::Unix("/tmp/s".into());
        assert_eq!(address_from_value(&address_to_value(&unix)).unwrap(), unix);
        let abs = Address::Abstract(b"name".to_vec());
        assert_eq!(address_from_value(&address_to_value(&abs)).unwrap(), abs);
    }

    #[test]
    fn requests_of_the_wrong_shape_are_refused_in_python_words() {
        assert!(
            Request::from_value(Value::from(3))
                .unwrap_err()
                .contains("non-iterable int")
        );
        assert!(
            Request::from_value(Value::from((1, 2)))
                .unwrap_err()
                .contains("expected 4")
        );
        let ok = Request::from_value(request(
            None,
            Value::from("dummy"),
            Value::Tuple(Tuple::new()),
            Value::Dict(Dict::new()),
        ))
        .unwrap();
        assert!(ok.ident.is_none());
        assert_eq!(&*ok.method, "dummy");
    }
}
