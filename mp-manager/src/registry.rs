//! The registry of shared types a server can create (CPython's
//! `BaseManager._registry`, filled by `register`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use mp_value::Value;

use crate::error::Exception;
use crate::shared::{Args, Call, Output, Raise, Shared};

/// Builds a new shared object from the arguments of `create`.
pub type Constructor =
    Arc<dyn Fn(Args, &Call<'_>) -> Result<Arc<dyn Shared>, Raise> + Send + Sync + 'static>;

/// One registered type id: how to create its objects (if the server may),
/// which methods proxies may call, which methods return new proxies, and
/// the CPython proxy class it maps to.
#[derive(Clone)]
pub struct TypeSpec {
    pub(crate) typeid: Arc<str>,
    pub(crate) constructor: Option<Constructor>,
    pub(crate) exposed: Option<Vec<String>>,
    pub(crate) method_to_typeid: Option<Arc<HashMap<String, String>>>,
    pub(crate) proxytype: &'static str,
    pub(crate) create_method: bool,
}

impl fmt::Debug for TypeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeSpec")
            .field("typeid", &self.typeid)
            .field("constructor", &self.constructor.is_some())
            .field("exposed", &self.exposed)
            .field("method_to_typeid", &self.method_to_typeid)
            .field("proxytype", &self.proxytype)
            .field("create_method", &self.create_method)
            .finish()
    }
}

impl TypeSpec {
    /// Exposes exactly `methods` (CPython's `exposed=`), instead of the
    /// object's public methods.
    pub fn exposed(&mut self, methods: &[&str]) -> &mut TypeSpec {
        self.exposed = Some(methods.iter().map(|m| (*m).to_owned()).collect());
        self
    }

    /// Makes `method` return a proxy to a new object of `typeid` (CPython's
    /// `method_to_typeid`); such methods are exposed too.
    pub fn method_to_typeid(&mut self, method: &str, typeid: &str) -> &mut TypeSpec {
        let map = self
            .method_to_typeid
            .get_or_insert_with(|| Arc::new(HashMap::new()));
        Arc::make_mut(map).insert(method.to_owned(), typeid.to_owned());
        self
    }

    /// The name of the CPython proxy class that a proxy of this type is
    /// pickled as (`"AutoProxy"` unless set; `"DictProxy"`, …).
    pub fn proxytype(&mut self, class: &'static str) -> &mut TypeSpec {
        self.proxytype = class;
        self
    }

    /// Whether managers get a creation method for this type id (CPython's
    /// `create_method`, default `true`); informational on the server.
    pub fn create_method(&mut self, create: bool) -> &mut TypeSpec {
        self.create_method = create;
        self
    }

    /// The type id.
    pub fn typeid(&self) -> &str {
        &self.typeid
    }

    /// The exposed methods for `obj`: the registered list (or the object's
    /// public methods), then the `method_to_typeid` methods, as CPython's
    /// `Server.create` builds it.
    pub(crate) fn exposed_for(&self, obj: &dyn Shared) -> Vec<String> {
        let mut exposed: Vec<String> = match &self.exposed {
            Some(e) => e.clone(),
            None => obj.methods().iter().map(|m| (*m).to_owned()).collect(),
        };
        if let Some(m) = &self.method_to_typeid {
            let mut extra: Vec<&String> = m.keys().collect();
            extra.sort();
            exposed.extend(extra.into_iter().cloned());
        }
        exposed
    }
}

/// The type ids a manager's server can create, by name.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use mp_manager::{Registry, SyncManager};
///
/// let mut registry = Registry::new();
/// SyncManager::register_types(&mut registry);
/// assert!(registry.get("dict").is_some());
/// assert!(registry.get("Queue").is_some());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Registry {
    types: HashMap<String, TypeSpec>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `typeid`, created by `constructor` from the arguments of
    /// `create` (CPython's `register(typeid, callable)`). Returns the entry
    /// for further settings ([`TypeSpec::exposed`], …). Registering a type
    /// id again replaces it.
    pub fn register(
        &mut self,
        typeid: &str,
        constructor: impl Fn(Args, &Call<'_>) -> Result<Arc<dyn Shared>, Raise> + Send + Sync + 'static,
    ) -> &mut TypeSpec {
        self.insert(typeid, Some(Arc::new(constructor)))
    }

    /// Registers `typeid` for a type made shareable by the
    /// [`shared`](crate::shared) attribute: created with its `new`
    /// function (or `Default`), exposing its public methods.
    pub fn register_type<T: crate::SharedType>(&mut self, typeid: &str) -> &mut TypeSpec {
        let spec = self.register(typeid, |args, cx| {
            let obj = T::construct(args, cx)?;
            Ok(Arc::new(crate::Locked::new(obj)) as Arc<dyn Shared>)
        });
        for (method, typeid) in T::METHOD_TO_TYPEID {
            spec.method_to_typeid(method, typeid);
        }
        spec
    }

    /// Registers `typeid` as a function of no arguments that hands out an
    /// object the server keeps (CPython's remote-manager idiom,
    /// `register('get_queue', callable=lambda: queue)`).
    pub fn register_shared(&mut self, typeid: &str, object: Arc<dyn Shared>) -> &mut TypeSpec {
        self.register(typeid, move |args, _| {
            if !args.positional().is_empty() || !args.keywords().is_empty() {
                return Err(Exception::type_error("this type id takes no arguments").into());
            }
            Ok(Arc::clone(&object))
        })
    }

    /// Registers a type id that the server never creates by name, only
    /// through `method_to_typeid` (CPython's `register('Iterator',
    /// proxytype=IteratorProxy, create_method=False)`).
    pub fn register_result_type(&mut self, typeid: &str) -> &mut TypeSpec {
        let spec = self.insert(typeid, None);
        spec.create_method = false;
        spec
    }

    fn insert(&mut self, typeid: &str, constructor: Option<Constructor>) -> &mut TypeSpec {
        let spec = TypeSpec {
            typeid: typeid.into(),
            constructor,
            exposed: None,
            method_to_typeid: None,
            proxytype: "AutoProxy",
            create_method: true,
        };
        self.types.insert(typeid.to_owned(), spec);
        self.types.get_mut(typeid).expect("inserted above")
    }

    /// A new object of `typeid`, made by its constructor outside any
    /// server (for example a queue to hand out with
    /// [`Registry::register_shared`]).
    ///
    /// # Errors
    ///
    /// The constructor's error; a `KeyError` traceback for an unknown type
    /// id or one without a constructor.
    pub fn instantiate(&self, typeid: &str, args: Args) -> Result<Arc<dyn Shared>, Raise> {
        let ctor = self
            .get(typeid)
            .and_then(|s| s.constructor.clone())
            .ok_or_else(|| Raise::Traceback(format!("KeyError: '{typeid}'\n")))?;
        ctor(args, &Call::detached(0))
    }

    /// The entry of `typeid`.
    pub fn get(&self, typeid: &str) -> Option<&TypeSpec> {
        self.types.get(typeid)
    }

    /// The registered type ids, sorted.
    pub fn typeids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.types.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

/// The set of shared types a manager's server process holds, as a type:
/// a manager started with [`BaseManager::start`](crate::BaseManager::start)
/// runs its server in a new process, and under the spawn and forkserver
/// start methods that process rebuilds the registry by calling
/// `register` (nothing but plain functions crosses to it).
///
/// # Examples
///
/// ```
/// use mp_manager::{Registrar, Registry, SyncManager};
///
/// struct MyTypes;
/// impl Registrar for MyTypes {
///     fn register(registry: &mut Registry) {
///         SyncManager::register_types(registry);
///         // registry.register_type::<MyCounter>("Counter");
///     }
/// }
/// ```
pub trait Registrar: 'static {
    /// Adds this manager's type ids to `registry`.
    fn register(registry: &mut Registry);
}

/// No type ids: a manager that only connects to a server, or whose
/// server's registry is given at run time ([`BaseManager::get_server`](crate::BaseManager::get_server)).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTypes;

impl Registrar for NoTypes {
    fn register(_: &mut Registry) {}
}

/// An object created without a callable (CPython's `create` of a type id
/// registered with `callable=None` and one argument): it keeps the value,
/// which `_getvalue()` returns.
#[derive(Debug)]
pub(crate) struct Opaque(pub(crate) Value);

impl Shared for Opaque {
    fn type_name(&self) -> &str {
        self.0.type_name()
    }
    fn methods(&self) -> Vec<&'static str> {
        Vec::new()
    }
    fn call(&self, method: &str, _: Args, _: &Call<'_>) -> Result<Output, Raise> {
        Err(Exception::attribute_error(format!(
            "'{}' object has no attribute '{method}'",
            self.0.type_name()
        ))
        .into())
    }
    fn repr(&self) -> String {
        self.0.to_string()
    }
    fn get_value(&self) -> Result<Value, Raise> {
        Ok(self.0.clone())
    }
    fn visit_values(&self, f: &mut dyn FnMut(&Value)) {
        f(&self.0)
    }
}
