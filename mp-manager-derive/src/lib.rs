//! # mp-manager-derive
//!
//! The `#[shared]` attribute of `mp-manager`, re-exported there as
//! `mp_manager::shared` (its documentation, with examples, is there).
//!
//! On an inherent `impl` block of a type `T`, it keeps the block as it is
//! and adds:
//!
//! - `impl mp_manager::SharedType for T`: the server-side dispatch by
//!   method name, each argument bound by position or keyword and converted
//!   with serde, each result converted back; `new(...)` (an associated
//!   function without `self`) is the constructor, else `Default`;
//! - `TProxy`, a typed proxy whose methods have the same names and
//!   arguments, returning `mp_manager::Result<R>`.
//!
//! Only `pub` (or `pub(crate)`, …) methods are callable; those whose names start with `_` are
//! callable but not exposed by default (CPython's `public_methods`). A
//! method marked `#[shared(proxy = "TypeId")]` returns a new shared object
//! of that registered type id (CPython's `method_to_typeid`), and its proxy
//! method returns that type's proxy.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{
    FnArg, GenericArgument, ImplItem, ItemImpl, Pat, PathArguments, ReturnType, Type, Visibility,
    parse_macro_input,
};

/// See `mp_manager::shared`.
#[proc_macro_attribute]
pub fn shared(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = TokenStream2::from(attr);
        return syn::Error::new_spanned(attr, "#[shared] takes no arguments on the impl block")
            .to_compile_error()
            .into();
    }
    let mut block = parse_macro_input!(item as ItemImpl);
    match expand(&mut block) {
        Ok(extra) => quote!(#block #extra).into(),
        Err(e) => {
            let err = e.to_compile_error();
            quote!(#block #err).into()
        }
    }
}

/// One method as the dispatch and the proxy see it.
struct Method {
    name: syn::Ident,
    params: Vec<(syn::Ident, Type)>,
    /// The success type (the `T` of `Result<T, E>`, or the return type).
    ok: Type,
    /// Whether it returns `Result<T, E>`.
    fallible: bool,
    /// `#[shared(proxy = "TypeId")]`.
    proxy_typeid: Option<String>,
}

fn expand(block: &mut ItemImpl) -> syn::Result<TokenStream2> {
    if block.trait_.is_some() {
        return Err(syn::Error::new_spanned(
            &block.self_ty,
            "#[shared] goes on an inherent impl block, not a trait impl",
        ));
    }
    if !block.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &block.generics,
            "#[shared] does not support generic types: the server must name one concrete type",
        ));
    }
    let self_ty = (*block.self_ty).clone();
    let type_name = match &self_ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.clone())
            .ok_or_else(|| syn::Error::new_spanned(&self_ty, "expected a type name"))?,
        other => return Err(syn::Error::new_spanned(other, "expected a type name")),
    };
    let proxy_name = format_ident!("{}Proxy", type_name);

    let mut methods = Vec::new();
    let mut constructor: Option<Vec<(syn::Ident, Type)>> = None;
    let mut constructor_fallible = false;
    for item in &mut block.items {
        let ImplItem::Fn(f) = item else { continue };
        let proxy_typeid = take_shared_attr(&mut f.attrs)?;
        // `pub` and `pub(crate)`-style methods are callable; private ones
        // stay the type's own.
        if matches!(f.vis, Visibility::Inherited) {
            continue;
        }
        let receiver = f.sig.receiver().cloned();
        let mut params = Vec::new();
        for arg in &f.sig.inputs {
            let FnArg::Typed(pt) = arg else { continue };
            let Pat::Ident(pi) = &*pt.pat else {
                return Err(syn::Error::new_spanned(
                    &pt.pat,
                    "#[shared] methods take plain named parameters",
                ));
            };
            params.push((pi.ident.clone(), (*pt.ty).clone()));
        }
        let (ok, fallible) = split_result(&f.sig.output);
        match receiver {
            None => {
                if f.sig.ident == "new" {
                    constructor = Some(params);
                    constructor_fallible = fallible;
                }
                continue;
            }
            Some(r) => {
                if !matches!(r.kind, syn::ReceiverKind::Reference(..)) {
                    return Err(syn::Error::new_spanned(
                        &f.sig,
                        "#[shared] methods take &self or &mut self",
                    ));
                }
            }
        }
        if !f.sig.generics.params.is_empty() {
            return Err(syn::Error::new_spanned(
                &f.sig.generics,
                "#[shared] methods cannot be generic",
            ));
        }
        methods.push(Method {
            name: f.sig.ident.clone(),
            params,
            ok,
            fallible,
            proxy_typeid,
        });
    }

    let krate = quote!(::mp_manager);
    let type_name_str = type_name.to_string();

    let mut exposed: Vec<String> = methods
        .iter()
        .map(|m| m.name.to_string())
        .filter(|n| !n.starts_with('_'))
        .collect();
    exposed.sort();
    let to_typeid: Vec<TokenStream2> = methods
        .iter()
        .filter_map(|m| {
            let t = m.proxy_typeid.as_ref()?;
            let n = m.name.to_string();
            Some(quote!((#n, #t)))
        })
        .collect();

    let arms = methods.iter().map(|m| {
        let name = &m.name;
        let name_str = name.to_string();
        let names: Vec<String> = m.params.iter().map(|(i, _)| i.to_string()).collect();
        let binds = m
            .params
            .iter()
            .enumerate()
            .map(|(i, (ident, ty))| quote!(let #ident: #ty = __bound.arg(#i)?;));
        let idents = m.params.iter().map(|(i, _)| i);
        let convert = if m.proxy_typeid.is_some() {
            quote!(#krate::__private::output_object(__value))
        } else {
            quote!(#krate::__private::output(&__value))
        };
        let call = quote!(self.#name(#(#idents),*));
        let body = if m.fallible {
            quote! {
                match #call {
                    Ok(__value) => #convert,
                    Err(__e) => Err(#krate::Raise::Exception(::std::convert::Into::into(__e))),
                }
            }
        } else {
            quote! {{ let __value = #call; #convert }}
        };
        quote! {
            #name_str => {
                let __bound = __args.bind(#name_str, &[#(#names),*])?;
                #(#binds)*
                #body
            }
        }
    });

    let construct = match &constructor {
        Some(params) => {
            let names: Vec<String> = params.iter().map(|(i, _)| i.to_string()).collect();
            let binds = params
                .iter()
                .enumerate()
                .map(|(i, (ident, ty))| quote!(let #ident: #ty = __bound.arg(#i)?;));
            let idents = params.iter().map(|(i, _)| i);
            let call = quote!(<#self_ty>::new(#(#idents),*));
            let result = if constructor_fallible {
                quote!(#call.map_err(|__e| #krate::Raise::Exception(::std::convert::Into::into(__e))))
            } else {
                quote!(Ok(#call))
            };
            quote! {
                let __bound = __args.bind(#type_name_str, &[#(#names),*])?;
                #(#binds)*
                #result
            }
        }
        None => quote! {
            __args.bind(#type_name_str, &[])?;
            Ok(<#self_ty as ::std::default::Default>::default())
        },
    };

    let proxy_methods = methods.iter().map(|m| {
        let name = &m.name;
        let name_str = name.to_string();
        let params = m.params.iter().map(|(i, t)| quote!(#i: #t));
        let idents = m.params.iter().map(|(i, _)| i);
        let args = quote!(&(#(#idents,)*));
        let doc = format!(
            "Calls `{name_str}` on the shared object (see [`{type_name_str}::{name_str}`])."
        );
        if m.proxy_typeid.is_some() {
            let ret = proxy_of(&m.ok);
            quote! {
                #[doc = #doc]
                ///
                /// # Errors
                ///
                /// The method's own exception, or a failure to reach the manager.
                pub fn #name(&self, #(#params),*) -> #krate::Result<#ret> {
                    self.proxy.call_proxy(#name_str, #args)
                }
            }
        } else {
            let ret = owned_or_str(&m.ok);
            quote! {
                #[doc = #doc]
                ///
                /// # Errors
                ///
                /// The method's own exception, or a failure to reach the manager.
                pub fn #name(&self, #(#params),*) -> #krate::Result<#ret> {
                    self.proxy.call(#name_str, #args)
                }
            }
        }
    });

    let proxy_doc = format!(
        "A proxy to a shared [`{type_name_str}`] (generated by `#[shared]`): its public methods, called in the manager."
    );
    Ok(quote! {
        impl #krate::SharedType for #self_ty {
            const TYPE_NAME: &'static str = #type_name_str;
            const METHODS: &'static [&'static str] = &[#(#exposed),*];
            const METHOD_TO_TYPEID: &'static [(&'static str, &'static str)] = &[#(#to_typeid),*];

            fn construct(
                __args: #krate::Args,
                _: &#krate::Call<'_>,
            ) -> ::std::result::Result<Self, #krate::Raise> {
                #construct
            }

            fn dispatch(
                &mut self,
                __method: &str,
                __args: #krate::Args,
                _: &#krate::Call<'_>,
            ) -> ::std::result::Result<#krate::Output, #krate::Raise> {
                match __method {
                    #(#arms)*
                    __other => Err(#krate::__private::no_such_method(#type_name_str, __other)),
                }
            }
        }

        #krate::__proxy_type!(#[doc = #proxy_doc] #proxy_name, "AutoProxy");

        impl #proxy_name {
            #(#proxy_methods)*
        }
    })
}

/// Removes `#[shared(proxy = "TypeId")]` from a method's attributes and
/// returns the type id.
fn take_shared_attr(attrs: &mut Vec<syn::Attribute>) -> syn::Result<Option<String>> {
    let mut typeid = None;
    let mut error = None;
    attrs.retain(|a| {
        if !a.path().is_ident("shared") {
            return true;
        }
        let r = a.parse_nested_meta(|meta| {
            if meta.path.is_ident("proxy") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                typeid = Some(lit.value());
                Ok(())
            } else {
                Err(meta.error("expected `proxy = \"TypeId\"`"))
            }
        });
        if let Err(e) = r {
            error = Some(e);
        }
        false
    });
    match error {
        Some(e) => Err(e),
        None => Ok(typeid),
    }
}

/// The success type of a return type, and whether it was a `Result`.
fn split_result(output: &ReturnType) -> (Type, bool) {
    let ty = match output {
        ReturnType::Default => return (syn::parse_quote!(()), false),
        ReturnType::Type(_, t) => (**t).clone(),
    };
    if let Type::Path(p) = &ty
        && let Some(last) = p.path.segments.last()
        && last.ident == "Result"
        && let PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(GenericArgument::Type(ok)) = args.args.first()
    {
        return (ok.clone(), true);
    }
    (ty, false)
}

/// `&str` becomes `String` where a value must be owned (a proxy's result);
/// other types are kept.
fn owned_or_str(ty: &Type) -> Type {
    if let Type::Reference(r) = ty
        && let Type::Path(p) = &*r.elem
        && p.path.is_ident("str")
    {
        return syn::parse_quote!(::std::string::String);
    }
    ty.clone()
}

/// The proxy type of a shared type: `Counter` gives `CounterProxy`.
fn proxy_of(ty: &Type) -> Type {
    if let Type::Path(p) = ty {
        let mut p = p.clone();
        if let Some(last) = p.path.segments.last_mut() {
            last.ident = syn::Ident::new(&format!("{}Proxy", last.ident), Span::call_site());
            return Type::Path(p);
        }
    }
    ty.clone()
}
