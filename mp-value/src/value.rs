//! The [`Value`] enum and its container types.
//!
//! Containers are immutable and reference-counted (`Arc`), so a clone is
//! cheap and keeps *identity*: two clones are the same object, as two
//! Python references to one list are, and a pickle writer that meets the
//! same container twice writes it once and refers back to it. Changing a
//! container goes through `make_mut` (copy-on-write: a container shared
//! elsewhere is copied first, so nobody else sees the change).
//!
//! Dropping never recurses: every container's `Drop` moves its children to
//! an explicit stack and frees them one level at a time, so a list nested a
//! million deep is freed in constant stack space.

use std::sync::Arc;

use crate::int::BigInt;
use crate::table::Table;

/// A dynamically typed value, after Python's built-in types.
///
/// `PartialEq` is Python's `==`: `1 == 1.0 == True`, `-0.0 == 0.0`, NaN
/// equals nothing, `b"a" == bytearray(b"a")`, `{1} == frozenset({1})`,
/// lists never equal tuples; objects compare by their construction
/// (callable, arguments and state). [`Value::py_hash`] is consistent
/// with it. `Display` is close to Python's `repr`.
#[derive(Clone, Default)]
pub enum Value {
    /// `None`.
    #[default]
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An `int` that fits in an `i64`.
    Int(i64),
    /// An `int` outside `i64` (any size).
    BigInt(BigInt),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(Arc<str>),
    /// A `bytes`.
    Bytes(Arc<[u8]>),
    /// A `bytearray`.
    ByteArray(Arc<Vec<u8>>),
    /// A `list`.
    List(List),
    /// A `tuple`.
    Tuple(Tuple),
    /// A `dict` (insertion-ordered, keys compared as Python compares them).
    Dict(Dict),
    /// A `set`.
    Set(Set),
    /// A `frozenset`.
    FrozenSet(Set),
    /// A reference to a module-level class or function by name, as pickle's
    /// `GLOBAL`/`STACK_GLOBAL` carry it.
    Global(Global),
    /// Any other object, kept as the recipe that rebuilds it.
    Object(Object),
}

/// The Python type name of a value (`"int"`, `"list"`, …), for messages.
impl Value {
    /// Whether this value holds other values: a container (list, tuple,
    /// dict, set, frozenset) or an object; a string, a number or a global
    /// holds none. A walk over nested values (the iterative drop, a
    /// search for proxies' tokens) need not look into the others.
    pub fn holds_values(&self) -> bool {
        matches!(
            self,
            Value::List(_)
                | Value::Tuple(_)
                | Value::Dict(_)
                | Value::Set(_)
                | Value::FrozenSet(_)
                | Value::Object(_)
        )
    }

    /// The name of the Python type this value stands for: `"NoneType"`,
    /// `"bool"`, `"int"`, `"float"`, `"str"`, `"bytes"`, `"bytearray"`,
    /// `"list"`, `"tuple"`, `"dict"`, `"set"`, `"frozenset"`, `"global"`,
    /// or `"object"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
        }
    }

    /// An integer, as `Int` when it fits in an `i64`, else `BigInt`.
    pub fn int(v: impl Into<BigInt>) -> Value {
        let big = v.into();
        match big.to_i64() {
            Some(i) => Value::Int(i),
            None => Value::BigInt(big),
        }
    }

    /// The address of the shared allocation behind a container, string or
    /// bytes value: equal for clones of one object (Python's `is`), `None`
    /// for values without identity (None, bools, numbers).
    pub fn identity(&self) -> Option<usize> {
        Some(match self {
            Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::BigInt(_) => {
                return None;
            }
            Value::Str(s) => Arc::as_ptr(s) as *const u8 as usize,
            Value::Bytes(b) => Arc::as_ptr(b) as *const u8 as usize,
            Value::ByteArray(b) => Arc::as_ptr(b) as usize,
            Value::List(l) => Arc::as_ptr(&l.0) as usize,
            Value::Tuple(t) => Arc::as_ptr(&t.0) as usize,
            Value::Dict(d) => Arc::as_ptr(&d.0) as usize,
            Value::Set(s) | Value::FrozenSet(s) => Arc::as_ptr(&s.0) as usize,
            Value::Global(g) => Arc::as_ptr(&g.0) as usize,
            Value::Object(o) => Arc::as_ptr(&o.0) as usize,
        })
    }

    /// Whether `self` and `other` are the same object (Python's `is`).
    pub fn is(&self, other: &Value) -> bool {
        match (self.identity(), other.identity()) {
            (Some(a), Some(b)) => a == b && self.type_name() == other.type_name(),
            _ => false,
        }
    }

    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `int` (or a `bool`, as in Python) that
    /// fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            Value::BigInt(b) => b.to_i64(),
            _ => None,
        }
    }

    /// The items, if this is a `tuple` or a `list`.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(t) => Some(t),
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// Whether this is `None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }
}

/// The items of a list or a tuple; frees nested containers without
/// recursion when dropped.
#[derive(Clone, Default)]
pub(crate) struct Items(pub(crate) Vec<Value>);

impl Drop for Items {
    fn drop(&mut self) {
        drop_iteratively(std::mem::take(&mut self.0));
    }
}

/// Gives `v` to the iterative drop's work list if it holds values, else
/// frees it here: the work list then grows only by containers (a dict of
/// strings puts nothing on it, so freeing one allocates nothing).
pub(crate) fn defer_drop(out: &mut Vec<Value>, v: Value) {
    if v.holds_values() {
        out.push(v);
    }
}

/// Frees `values` and everything only they hold, one level at a time:
/// a container whose last reference this is gives its children to the
/// work list before it is freed, so no `Drop` ever runs a deep recursion.
pub(crate) fn drop_iteratively(values: Vec<Value>) {
    let mut stack = values;
    while let Some(v) = stack.pop() {
        match v {
            Value::List(List(a)) | Value::Tuple(Tuple(a)) => {
                if let Some(mut items) = Arc::into_inner(a) {
                    for v in items.0.drain(..) {
                        defer_drop(&mut stack, v);
                    }
                }
            }
            Value::Dict(Dict(a)) => {
                if let Some(mut table) = Arc::into_inner(a) {
                    table.drain_into(&mut stack);
                }
            }
            Value::Set(Set(a)) | Value::FrozenSet(Set(a)) => {
                if let Some(mut table) = Arc::into_inner(a) {
                    table.drain_into(&mut stack);
                }
            }
            Value::Object(Object(a)) => {
                if let Some(mut data) = Arc::into_inner(a) {
                    data.drain_into(&mut stack);
                }
            }
            _ => {}
        }
    }
}

macro_rules! sequence {
    ($(#[$doc:meta])* $name:ident, $py:literal) => {
        $(#[$doc])*
        #[derive(Clone, Default)]
        pub struct $name(pub(crate) Arc<Items>);

        impl $name {
            #[doc = concat!("An empty `", $py, "`.")]
            pub fn new() -> $name {
                $name::default()
            }

            /// The items, to change in place: copied first if another
            /// reference to this object exists (copy-on-write).
            pub fn make_mut(&mut self) -> &mut Vec<Value> {
                &mut Arc::make_mut(&mut self.0).0
            }

            /// Whether another reference to this object exists (Python's
            /// `sys.getrefcount` above one): a change through
            /// [`make_mut`](Self::make_mut) would then copy it.
            pub fn is_shared(&self) -> bool {
                Arc::strong_count(&self.0) > 1
            }

            /// The items as a `Vec`, without copying when this is the only
            /// reference.
            pub fn into_vec(self) -> Vec<Value> {
                match Arc::try_unwrap(self.0) {
                    Ok(mut items) => std::mem::take(&mut items.0),
                    Err(shared) => shared.0.clone(),
                }
            }
        }

        impl std::ops::Deref for $name {
            type Target = [Value];
            fn deref(&self) -> &[Value] {
                &self.0.0
            }
        }

        impl From<Vec<Value>> for $name {
            fn from(items: Vec<Value>) -> $name {
                $name(Arc::new(Items(items)))
            }
        }

        impl FromIterator<Value> for $name {
            fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> $name {
                $name::from(iter.into_iter().collect::<Vec<_>>())
            }
        }
    };
}

sequence!(
    /// A Python `list`: a shared, ordered sequence (dereferences to
    /// `[Value]`).
    List,
    "list"
);
sequence!(
    /// A Python `tuple`: a shared, ordered sequence (dereferences to
    /// `[Value]`).
    Tuple,
    "tuple"
);

impl Tuple {
    /// The empty tuple, one shared object (as CPython's `()` is a
    /// singleton): cloning it allocates nothing.
    pub fn empty() -> Tuple {
        static EMPTY: std::sync::OnceLock<Tuple> = std::sync::OnceLock::new();
        EMPTY.get_or_init(Tuple::default).clone()
    }
}

/// A Python `dict`: insertion-ordered, keys hashed and compared as Python
/// does (`d[1]`, `d[1.0]` and `d[True]` are one entry).
#[derive(Clone, Default)]
pub struct Dict(pub(crate) Arc<Table<Value>>);

/// A Python `set` or `frozenset` (which one is said by the [`Value`]
/// variant): insertion-ordered members, hashed and compared as Python does.
#[derive(Clone, Default)]
pub struct Set(pub(crate) Arc<Table<()>>);

/// A reference to a module-level class or function: the module's name and
/// the qualified name inside it (`"queue"`, `"Full"`; `"collections"`,
/// `"OrderedDict"`; `"pkg.mod"`, `"Outer.Inner"`).
#[derive(Clone)]
pub struct Global(pub(crate) Arc<GlobalName>);

#[derive(PartialEq, Eq, Hash)]
pub(crate) struct GlobalName {
    pub(crate) module: Arc<str>,
    pub(crate) name: Arc<str>,
}

impl Global {
    /// The global `module.name` (`name` may be dotted, a qualified name).
    pub fn new(module: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Global {
        Global(Arc::new(GlobalName {
            module: module.into(),
            name: name.into(),
        }))
    }

    /// The module's name.
    pub fn module(&self) -> &str {
        &self.0.module
    }

    /// The qualified name inside the module.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The module's name, shared.
    pub fn module_arc(&self) -> &Arc<str> {
        &self.0.module
    }

    /// The qualified name, shared.
    pub fn name_arc(&self) -> &Arc<str> {
        &self.0.name
    }

    /// Whether this is `module.name`.
    pub fn is(&self, module: &str, name: &str) -> bool {
        self.module() == module && self.name() == name
    }
}

impl PartialEq for Global {
    fn eq(&self, other: &Global) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Global {}

/// How an [`Object`] is created, before its [`ObjectOp`]s run; the pickle
/// opcode each one stands for is in parentheses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constructor {
    /// `callable(*args)` (`REDUCE`): exceptions, most `__reduce__` results.
    Reduce,
    /// `cls.__new__(cls, *args)` (`NEWOBJ`): instances of plain classes.
    NewObj,
    /// `cls.__new__(cls, *args, **kwargs)` (`NEWOBJ_EX`).
    NewObjEx,
    /// `cls(*args)` for a class named in the opcode (`INST`, protocol 0).
    Inst,
    /// `cls(*args)` for a class taken from the stack (`OBJ`, protocol 1).
    Obj,
}

/// A step applied to an object after it is created, in order.
#[derive(Clone, Debug)]
pub enum ObjectOp {
    /// `obj.extend(items)` (or `append` each) (`APPENDS`).
    Append(Vec<Value>),
    /// `obj[key] = value` for each pair (`SETITEMS`).
    SetItems(Vec<(Value, Value)>),
    /// `obj.__setstate__(state)`, or an update of its `__dict__` (and slots
    /// when the state is a `(dict, slots)` pair) (`BUILD`).
    Build(Value),
}

/// An object of a class this model does not know (an exception, a
/// `multiprocessing.managers.Token`, a user's instance), kept as the recipe
/// that rebuilds it — enough to write it back exactly as it came.
#[derive(Clone)]
pub struct Object(pub(crate) Arc<ObjectData>);

/// The parts of an [`Object`].
#[derive(Clone, Debug)]
pub struct ObjectData {
    /// How it is created.
    pub constructor: Constructor,
    /// The callable or class (normally a [`Value::Global`]).
    pub callable: Value,
    /// The positional arguments (normally a [`Value::Tuple`]).
    pub args: Value,
    /// The keyword arguments of [`Constructor::NewObjEx`] (a dict), else
    /// `None`.
    pub kwargs: Option<Value>,
    /// What is done to it afterwards.
    pub ops: Vec<ObjectOp>,
}

impl ObjectData {
    /// Moves the parts that hold values into `out` (see `defer_drop`).
    fn drain_into(&mut self, out: &mut Vec<Value>) {
        defer_drop(out, std::mem::take(&mut self.callable));
        defer_drop(out, std::mem::take(&mut self.args));
        if let Some(kwargs) = self.kwargs.take() {
            defer_drop(out, kwargs);
        }
        for op in self.ops.drain(..) {
            match op {
                ObjectOp::Append(items) => {
                    for v in items {
                        defer_drop(out, v);
                    }
                }
                ObjectOp::SetItems(pairs) => {
                    for (k, v) in pairs {
                        defer_drop(out, k);
                        defer_drop(out, v);
                    }
                }
                ObjectOp::Build(state) => defer_drop(out, state),
            }
        }
    }
}

impl Drop for ObjectData {
    fn drop(&mut self) {
        let mut children = Vec::new();
        self.drain_into(&mut children);
        drop_iteratively(children);
    }
}

impl Object {
    /// An object built as `constructor` says from `callable` and `args`.
    pub fn new(constructor: Constructor, callable: Value, args: Value) -> Object {
        Object(Arc::new(ObjectData {
            constructor,
            callable,
            args,
            kwargs: None,
            ops: Vec::new(),
        }))
    }

    /// `callable(*args)`, as pickle's `REDUCE` (exceptions: `KeyError('k')`
    /// is `Object::reduce(Global::new("builtins", "KeyError"), ("k",))`).
    pub fn reduce(callable: impl Into<Value>, args: impl Into<Value>) -> Object {
        Object::new(Constructor::Reduce, callable.into(), args.into())
    }

    /// `cls.__new__(cls, *args)`, as pickle's `NEWOBJ`.
    pub fn new_obj(cls: impl Into<Value>, args: impl Into<Value>) -> Object {
        Object::new(Constructor::NewObj, cls.into(), args.into())
    }

    /// Adds a `BUILD` step with `state` (`__setstate__`).
    pub fn with_state(mut self, state: impl Into<Value>) -> Object {
        self.make_mut().ops.push(ObjectOp::Build(state.into()));
        self
    }

    /// The parts, to change in place (copy-on-write).
    pub fn make_mut(&mut self) -> &mut ObjectData {
        Arc::make_mut(&mut self.0)
    }

    /// Whether another reference to this object exists.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }

    /// How it is created.
    pub fn constructor(&self) -> Constructor {
        self.0.constructor
    }

    /// The callable or class it is created with.
    pub fn callable(&self) -> &Value {
        &self.0.callable
    }

    /// The class or function, when the callable is a global (`KeyError`,
    /// `Token`, `RebuildProxy`).
    pub fn global(&self) -> Option<&Global> {
        match &self.0.callable {
            Value::Global(g) => Some(g),
            _ => None,
        }
    }

    /// The positional arguments it is created with.
    pub fn args(&self) -> &Value {
        &self.0.args
    }

    /// The keyword arguments of a `NEWOBJ_EX` object.
    pub fn kwargs(&self) -> Option<&Value> {
        self.0.kwargs.as_ref()
    }

    /// The steps applied after creation.
    pub fn ops(&self) -> &[ObjectOp] {
        &self.0.ops
    }

    /// The state of its last `BUILD` step, if any.
    pub fn state(&self) -> Option<&Value> {
        self.0.ops.iter().rev().find_map(|op| match op {
            ObjectOp::Build(s) => Some(s),
            _ => None,
        })
    }

    /// All the parts.
    pub fn data(&self) -> &ObjectData {
        &self.0
    }
}

macro_rules! debug_as_repr {
    ($($t:ident => $variant:ident),*) => {$(
        impl std::fmt::Debug for $t {
            /// As the value's `repr`.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&Value::$variant(self.clone()), f)
            }
        }
    )*};
}

debug_as_repr!(List => List, Tuple => Tuple, Dict => Dict, Set => Set, Global => Global, Object => Object);

impl From<ObjectData> for Object {
    fn from(data: ObjectData) -> Object {
        Object(Arc::new(data))
    }
}
