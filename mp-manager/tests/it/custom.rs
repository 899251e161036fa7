//! A user type made shareable with `#[shared]`: exposure rules, errors
//! with their kind, unexposed methods refused, `method_to_typeid`
//! returning working proxies (MGR-30).

use mp_manager::{Error, Exception, Proxy, ProxyType};

use crate::support::Served;

/// CPython's test type: `f` and `g` public, `_h` private.
#[derive(Default)]
pub(crate) struct Foo {
    calls: u32,
}

#[mp_manager::shared]
impl Foo {
    pub(crate) fn f(&mut self) -> String {
        self.calls += 1;
        "f()".into()
    }

    pub(crate) fn g(&self) -> Result<(), Exception> {
        Err(Exception::value_error("g()"))
    }

    pub(crate) fn _h(&self) -> String {
        "_h()".into()
    }

    pub(crate) fn greet(&self, name: &str, times: u32) -> String {
        name.repeat(times as usize)
    }

    pub(crate) fn calls(&self) -> u32 {
        self.calls
    }

    #[shared(proxy = "Foo")]
    pub(crate) fn spawn(&self) -> Foo {
        Foo { calls: self.calls }
    }

    fn private_helper(&self) -> u32 {
        self.calls
    }
}

fn served() -> Served {
    Served::with_registry(|r| {
        mp_manager::SyncManager::register_types(r);
        r.register_type::<Foo>("Foo");
        r.register_type::<Foo>("Bar").exposed(&["f", "_h"]);
    })
}

#[test]
fn public_methods_are_exposed_by_default() {
    let s = served();
    let foo: FooProxy = s.manager.create("Foo", &()).unwrap();
    // CPython's `create`: the public methods, then the `method_to_typeid`
    // ones (listed twice when public too, as CPython lists them).
    let exposed = foo.proxy().exposed().unwrap().to_vec();
    assert_eq!(exposed, ["calls", "f", "g", "greet", "spawn", "spawn"]);
    assert_eq!(foo.f().unwrap(), "f()");
    assert_eq!(foo.greet("ab", 2).unwrap(), "abab");
    let err = foo.g().unwrap_err();
    assert!(err.is("ValueError"), "{err:?}");
    assert_eq!(err.exception().unwrap().message(), "g()");
    // `_h` is not exposed: refused, with the method and the exposed list.
    let err = foo._h().unwrap_err();
    let Error::Remote(text) = &err else {
        panic!("{err:?}")
    };
    assert!(text.contains("method '_h'"), "{text}");
    assert!(text.contains("'greet'"), "{text}");
    let _ = Foo::default().private_helper();
}

#[test]
fn exposed_limits_the_proxy_to_exactly_those() {
    let s = served();
    let bar: FooProxy = s.manager.create("Bar", &()).unwrap();
    assert_eq!(bar.proxy().exposed().unwrap(), ["f", "_h", "spawn"]);
    assert_eq!(bar._h().unwrap(), "_h()");
    assert!(matches!(bar.g().unwrap_err(), Error::Remote(_)));
}

#[test]
fn method_to_typeid_returns_working_proxies() {
    let s = served();
    let foo: FooProxy = s.manager.create("Foo", &()).unwrap();
    foo.f().unwrap();
    let child = foo.spawn().unwrap();
    assert_eq!(child.calls().unwrap(), 1);
    child.f().unwrap();
    assert_eq!(child.calls().unwrap(), 2);
    assert_eq!(foo.calls().unwrap(), 1);
    assert_eq!(child.proxy().token().typeid, "Foo");
    assert_eq!(s.manager.number_of_objects().unwrap(), 2);
    drop(foo);
    drop(child);
    assert_eq!(s.manager.number_of_objects().unwrap(), 0);
}

#[test]
fn untyped_calls_and_fallbacks() {
    let s = served();
    let foo: Proxy = s.manager.create("Foo", &()).unwrap();
    assert_eq!(foo.call::<String>("f", &()).unwrap(), "f()");
    // Wrong arguments are the method's TypeError (CPython's #ERROR).
    let err = foo.call::<String>("greet", &(1, 2, 3)).unwrap_err();
    assert!(err.is("TypeError"), "{err:?}");
    // `__repr__` and `__str__` work unexposed; `#GETVALUE` of a type
    // without a value is a RemoteError.
    assert_eq!(foo.referent_repr().unwrap(), "<Foo object>");
    assert!(matches!(
        foo.get_value::<i64>().unwrap_err(),
        Error::Remote(_)
    ));
    assert_eq!(
        format!("{foo:?}").split(" at ").next().unwrap(),
        "<AutoProxy object, typeid 'Foo'"
    );
    // An unknown type id.
    assert!(matches!(
        s.manager.create::<Proxy>("Nope", &()).unwrap_err(),
        Error::Remote(_)
    ));
}
