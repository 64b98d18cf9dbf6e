//! Rust code for one world: its types, and a stub per plugin and exported
//! interface with one typed method per callable function.
//!
//! Layout of the output, at the macro's call site:
//!
//! - the world's own types, and the plugin's stub (`Math`), at the top;
//! - a module per interface that owns a type the stubs use or that the world
//!   exports (`pub mod stock`), holding that interface's types and, for an
//!   exported interface, its stub (`stock::Stock`).
//!
//! Only what a caller can reach is generated: functions the host leaves out
//! of its catalog (resource methods, `async` functions, functions whose types
//! include resources, futures, streams or error contexts) get no method, and
//! a type gets generated only if a generated method uses it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};
use wit_parser::{
    Function, FunctionKind, Handle, InterfaceId, Resolve, Result_, Type, TypeDefKind, TypeId,
    TypeOwner, WorldId, WorldItem, WorldKey,
};

use crate::names::{camel, ident, serde_field_name, serde_variant_name, snake};

/// The names the stubs themselves define: a WIT function or interface of the
/// same name gets a trailing `_`.
const STUB_METHODS: &[&str] = &["new", "with_options"];

/// Generates the stubs for `world`, whose functions are served as
/// `<plugin>.…`.
pub fn world(resolve: &Resolve, world: WorldId, plugin: &str) -> TokenStream {
    let mut generator = Generator::new(resolve, world, plugin);
    generator.collect();
    generator.emit()
}

/// Where generated code sits: at the call site, or in an interface's module.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Root,
    Interface(InterfaceId),
}

/// An exported interface with callable functions.
struct Export<'a> {
    /// The name in callable names (`stock` in `inventory.stock.reserve`).
    name: String,
    id: InterfaceId,
    functions: Vec<&'a Function>,
}

struct Generator<'a> {
    resolve: &'a Resolve,
    world: WorldId,
    plugin: &'a str,
    /// World-level exported functions that are callable.
    functions: Vec<&'a Function>,
    exports: Vec<Export<'a>>,
    /// Named types the generated methods use, directly or through others.
    types: BTreeSet<TypeId>,
    /// The module of each interface that gets one.
    modules: HashMap<InterfaceId, Ident>,
}

impl<'a> Generator<'a> {
    fn new(resolve: &'a Resolve, world: WorldId, plugin: &'a str) -> Generator<'a> {
        Generator {
            resolve,
            world,
            plugin,
            functions: Vec::new(),
            exports: Vec::new(),
            types: BTreeSet::new(),
            modules: HashMap::new(),
        }
    }

    /// Finds the callable functions, the types they use and the modules.
    fn collect(&mut self) {
        let resolve = self.resolve;
        for (key, item) in &resolve.worlds[self.world].exports {
            match item {
                WorldItem::Function(function) if callable(resolve, function) => {
                    self.functions.push(function);
                }
                WorldItem::Interface { id, .. } => {
                    let interface = &resolve.interfaces[*id];
                    let name = match key {
                        WorldKey::Name(name) => name.clone(),
                        WorldKey::Interface(_) => interface.name.clone().unwrap_or_default(),
                    };
                    let functions: Vec<_> = interface
                        .functions
                        .values()
                        .filter(|function| callable(resolve, function))
                        .collect();
                    // Two exports of one name (`a:x/stock`, `b:y/stock`):
                    // the host serves the first, and so do the stubs.
                    let taken = self.exports.iter().any(|export| export.name == name);
                    if !functions.is_empty() && !taken {
                        self.exports.push(Export {
                            name,
                            id: *id,
                            functions,
                        });
                    }
                }
                _ => {}
            }
        }
        let used: Vec<Type> = self
            .functions
            .iter()
            .chain(self.exports.iter().flat_map(|export| &export.functions))
            .flat_map(|function| {
                function
                    .params
                    .iter()
                    .map(|param| param.ty)
                    .chain(function.result)
            })
            .collect();
        for ty in used {
            self.use_type(ty);
        }

        // A module per interface that owns a used type or is exported, named
        // after the interface (or, for an inline interface, its export name);
        // a name two interfaces share gets their package's name in front.
        let mut interfaces: Vec<(InterfaceId, String)> = self
            .exports
            .iter()
            .map(|export| (export.id, export.name.clone()))
            .collect();
        for id in &self.types {
            if let TypeOwner::Interface(owner) = resolve.types[*id].owner
                && !interfaces.iter().any(|(known, _)| *known == owner)
            {
                let name = resolve.interfaces[owner].name.clone().unwrap_or_default();
                interfaces.push((owner, name));
            }
        }
        let mut taken = BTreeSet::new();
        for (id, name) in interfaces {
            let mut module = snake(&name);
            if !taken.insert(module.clone()) {
                let package = resolve.interfaces[id]
                    .package
                    .map(|package| snake(&resolve.packages[package].name.name))
                    .unwrap_or_default();
                module = format!("{package}_{module}");
                let mut n = 2;
                while !taken.insert(module.clone()) {
                    module = format!("{package}_{}{n}", snake(&name));
                    n += 1;
                }
            }
            self.modules.insert(id, ident(&module));
        }
    }

    /// Records the named types `ty` mentions.
    fn use_type(&mut self, ty: Type) {
        let Type::Id(id) = ty else { return };
        let def = &self.resolve.types[id];
        if def.name.is_some() && !self.types.insert(id) {
            return;
        }
        match &def.kind {
            TypeDefKind::Record(record) => {
                for field in &record.fields {
                    self.use_type(field.ty);
                }
            }
            TypeDefKind::Variant(variant) => {
                for case in &variant.cases {
                    if let Some(ty) = case.ty {
                        self.use_type(ty);
                    }
                }
            }
            TypeDefKind::Tuple(tuple) => {
                for ty in &tuple.types {
                    self.use_type(*ty);
                }
            }
            TypeDefKind::Option(ty)
            | TypeDefKind::List(ty)
            | TypeDefKind::FixedLengthList(ty, _)
            | TypeDefKind::Type(ty) => self.use_type(*ty),
            TypeDefKind::Result(result) => {
                for ty in result.ok.iter().chain(&result.err) {
                    self.use_type(*ty);
                }
            }
            TypeDefKind::Map(key, value) => {
                self.use_type(*key);
                self.use_type(*value);
            }
            _ => {}
        }
    }

    fn emit(&self) -> TokenStream {
        let mut root = TokenStream::new();
        let mut modules: BTreeMap<String, (Ident, InterfaceId, TokenStream)> = BTreeMap::new();
        for (id, module) in &self.modules {
            modules.insert(
                module.to_string(),
                (module.clone(), *id, TokenStream::new()),
            );
        }
        for id in &self.types {
            let scope = self.scope_of(*id);
            let code = self.type_def(*id, scope);
            match scope {
                Scope::Root => root.extend(code),
                Scope::Interface(owner) => {
                    let module = self.modules[&owner].to_string();
                    modules.get_mut(&module).expect("module").2.extend(code);
                }
            }
        }

        // The interface stubs, and the plugin's stub with their accessors.
        let mut accessors = TokenStream::new();
        for export in &self.exports {
            let scope = Scope::Interface(export.id);
            let interface = &self.resolve.interfaces[export.id];
            let stub = self.stub_name(&export.name, scope);
            let prefix = format!("{}.{}", self.plugin, export.name);
            let doc = paragraphs(&[
                &format!(
                    "Typed calls to the functions of the `{}` interface, `{prefix}.*`.",
                    export.name
                ),
                &docs(&interface.docs.contents),
            ]);
            let code = self.stub(&stub, &doc, &prefix, &export.functions, scope, quote!());
            let module = &self.modules[&export.id];
            modules
                .get_mut(&module.to_string())
                .expect("module")
                .2
                .extend(code);

            let accessor = method_ident(&export.name);
            let doc = format!(
                "The functions of the `{}` interface: `{prefix}.*`.",
                export.name
            );
            accessors.extend(quote! {
                #[doc = #doc]
                pub fn #accessor(&self) -> #module::#stub {
                    #module::#stub::new(&self.client).with_options(self.options.clone())
                }
            });
        }
        let world = &self.resolve.worlds[self.world];
        let stub = self.stub_name(self.plugin, Scope::Root);
        let doc = paragraphs(&[
            &format!(
                "Typed calls to the `{}` plugin, from its WIT world `{}`.",
                self.plugin, world.name
            ),
            &docs(&world.docs.contents),
        ]);
        root.extend(self.stub(
            &stub,
            &doc,
            self.plugin,
            &self.functions,
            Scope::Root,
            accessors,
        ));

        for (module, id, code) in modules.into_values() {
            let interface = &self.resolve.interfaces[id];
            let name = match interface.package {
                Some(package) => format!(
                    "{}/{}",
                    self.resolve.packages[package].name,
                    interface.name.as_deref().unwrap_or_default()
                ),
                None => interface.name.clone().unwrap_or_default(),
            };
            let doc = paragraphs(&[
                &format!(
                    "Types of the WIT interface `{name}` and, when the world exports it, its stub."
                ),
                &docs(&interface.docs.contents),
            ]);
            root.extend(quote! {
                #[doc = #doc]
                pub mod #module {
                    #code
                }
            });
        }
        root
    }

    /// A stub struct named `name` whose methods call `<prefix>.<function>`.
    fn stub(
        &self,
        name: &Ident,
        doc: &str,
        prefix: &str,
        functions: &[&Function],
        scope: Scope,
        extra: TokenStream,
    ) -> TokenStream {
        let methods = functions
            .iter()
            .map(|function| self.method(function, prefix, scope));
        quote! {
            #[doc = #doc]
            ///
            /// Holds a clone of the [`Client`](::wasmrpc_client::Client) (clones share its
            /// connections) and the [`CallOptions`](::wasmrpc_client::CallOptions) every call
            /// is made with; each method calls
            /// [`Client::call_with`](::wasmrpc_client::Client::call_with).
            #[derive(::std::clone::Clone)]
            pub struct #name {
                client: ::wasmrpc_client::Client,
                options: ::wasmrpc_client::CallOptions,
            }

            impl #name {
                /// Calls through `client`, with default call options.
                pub fn new(client: &::wasmrpc_client::Client) -> Self {
                    Self {
                        client: client.clone(),
                        options: ::wasmrpc_client::CallOptions::default(),
                    }
                }

                /// Makes every call of this stub with `options` (deadline,
                /// retries, metadata, ...).
                pub fn with_options(mut self, options: ::wasmrpc_client::CallOptions) -> Self {
                    self.options = options;
                    self
                }

                #extra
                #(#methods)*
            }
        }
    }

    /// One typed method calling `<prefix>.<function>`.
    fn method(&self, function: &Function, prefix: &str, scope: Scope) -> TokenStream {
        let callable = format!("{prefix}.{}", function.name);
        let name = method_ident(&function.name);
        let params: Vec<Ident> = function
            .params
            .iter()
            .map(|param| ident(&snake(&param.name)))
            .collect();
        let types = function.params.iter().map(|param| match param.ty {
            Type::String => quote!(&str),
            ty => self.rust_type(ty, scope),
        });
        let args = if params.is_empty() {
            quote!(::std::vec::Vec::<()>::new())
        } else {
            quote!((#(#params,)*))
        };
        let mut doc = paragraphs(&[
            &docs(&function.docs.contents),
            &format!("Calls `{callable}`."),
        ]);

        let call = |ok: TokenStream| {
            quote! {
                self.client
                    .call_with::<_, #ok>(#callable, #args, self.options.clone())
                    .await
            }
        };
        let (output, body) = match function.result.map(|ty| (ty, self.top_result(ty))) {
            None => (quote!(()), call(quote!(()))),
            Some((ty, None)) => {
                let ty = self.rust_type(ty, scope);
                (ty.clone(), call(ty))
            }
            Some((_, Some(result))) => {
                doc.push_str(
                    "\n\nThe function's own error (its `result`'s `err`, which the host answers as a \
                     `handler_error` carrying the value as its `detail`) comes back as `Ok(Err(_))`; \
                     every other failure, a `handler_error` whose detail is not of the error type \
                     included, as `Err(CallError)`.",
                );
                let ok = self.optional_type(result.ok, scope);
                let err = self.optional_type(result.err, scope);
                let call = call(ok.clone());
                let body = quote! {
                    match #call {
                        ::std::result::Result::Ok(value) => {
                            ::std::result::Result::Ok(::std::result::Result::Ok(value))
                        }
                        ::std::result::Result::Err(error)
                            if error.code == ::wasmrpc_client::ErrorCode::HandlerError =>
                        {
                            // A missing detail reads as `null`: the value of
                            // an absent error type, or of an `option`'s none.
                            let detail = error
                                .detail
                                .clone()
                                .unwrap_or(::wasmrpc_client::__private::Value::Null);
                            match ::wasmrpc_client::typed::from_value::<#err>(detail) {
                                ::std::result::Result::Ok(err) => {
                                    ::std::result::Result::Ok(::std::result::Result::Err(err))
                                }
                                ::std::result::Result::Err(_) => ::std::result::Result::Err(error),
                            }
                        }
                        ::std::result::Result::Err(error) => ::std::result::Result::Err(error),
                    }
                };
                (quote!(::std::result::Result<#ok, #err>), body)
            }
        };
        quote! {
            #[doc = #doc]
            pub async fn #name(&self, #(#params: #types),*)
                -> ::std::result::Result<#output, ::wasmrpc_client::CallError>
            {
                #body
            }
        }
    }

    /// The `result` a function's top-level result is, through aliases: the
    /// host unwraps it (its `ok` is the reply, its `err` a `handler_error`).
    fn top_result(&self, ty: Type) -> Option<&'a Result_> {
        let Type::Id(id) = ty else { return None };
        match &self.resolve.types[id].kind {
            TypeDefKind::Result(result) => Some(result),
            TypeDefKind::Type(ty) => self.top_result(*ty),
            _ => None,
        }
    }

    fn optional_type(&self, ty: Option<Type>, scope: Scope) -> TokenStream {
        match ty {
            Some(ty) => self.rust_type(ty, scope),
            None => quote!(()),
        }
    }

    /// The Rust type of `ty`, as written in `scope`.
    fn rust_type(&self, ty: Type, scope: Scope) -> TokenStream {
        match ty {
            Type::Bool => quote!(bool),
            Type::U8 => quote!(u8),
            Type::U16 => quote!(u16),
            Type::U32 => quote!(u32),
            Type::U64 => quote!(u64),
            Type::S8 => quote!(i8),
            Type::S16 => quote!(i16),
            Type::S32 => quote!(i32),
            Type::S64 => quote!(i64),
            Type::F32 => quote!(f32),
            Type::F64 => quote!(f64),
            Type::Char => quote!(char),
            Type::String => quote!(::std::string::String),
            Type::ErrorContext => unreachable!("functions using error contexts are skipped"),
            Type::Id(id) => {
                let def = &self.resolve.types[id];
                if let Some(name) = &def.name {
                    let name = ident(&camel(name));
                    let here = self.scope_of(id);
                    return match (scope, here) {
                        (Scope::Root, Scope::Root) => quote!(#name),
                        (Scope::Interface(a), Scope::Interface(b)) if a == b => quote!(#name),
                        (Scope::Root, Scope::Interface(owner)) => {
                            let module = &self.modules[&owner];
                            quote!(#module::#name)
                        }
                        (Scope::Interface(_), Scope::Root) => quote!(super::#name),
                        (Scope::Interface(_), Scope::Interface(owner)) => {
                            let module = &self.modules[&owner];
                            quote!(super::#module::#name)
                        }
                    };
                }
                self.structural_type(&def.kind, scope)
            }
        }
    }

    /// The Rust type of an anonymous (or aliased) WIT type.
    fn structural_type(&self, kind: &TypeDefKind, scope: Scope) -> TokenStream {
        match kind {
            TypeDefKind::Option(ty) => {
                let ty = self.rust_type(*ty, scope);
                quote!(::std::option::Option<#ty>)
            }
            TypeDefKind::List(ty) => {
                let ty = self.rust_type(*ty, scope);
                quote!(::std::vec::Vec<#ty>)
            }
            TypeDefKind::FixedLengthList(ty, len) => {
                let ty = self.rust_type(*ty, scope);
                // serde implements arrays up to 32 elements.
                if *len <= 32 {
                    let len = Literal::usize_unsuffixed(*len as usize);
                    quote!([#ty; #len])
                } else {
                    quote!(::std::vec::Vec<#ty>)
                }
            }
            TypeDefKind::Tuple(tuple) => {
                let types = tuple.types.iter().map(|ty| self.rust_type(*ty, scope));
                quote!((#(#types,)*))
            }
            TypeDefKind::Result(result) => {
                let ok = self.optional_type(result.ok, scope);
                let err = self.optional_type(result.err, scope);
                quote!(::std::result::Result<#ok, #err>)
            }
            TypeDefKind::Map(key, value) => {
                let key = self.rust_type(*key, scope);
                let value = self.rust_type(*value, scope);
                quote!(::std::collections::BTreeMap<#key, #value>)
            }
            TypeDefKind::Type(ty) => self.rust_type(*ty, scope),
            other => unreachable!("a {} is always named or never callable", other.as_str()),
        }
    }

    fn scope_of(&self, id: TypeId) -> Scope {
        match self.resolve.types[id].owner {
            TypeOwner::Interface(owner) => Scope::Interface(owner),
            TypeOwner::World(_) | TypeOwner::None => Scope::Root,
        }
    }

    /// The definition of the named type `id`.
    fn type_def(&self, id: TypeId, scope: Scope) -> TokenStream {
        let def = &self.resolve.types[id];
        let wit_name = def.name.as_deref().expect("named type");
        let name = ident(&camel(wit_name));
        let doc = docs(&def.docs.contents);
        let serde = quote!(::wasmrpc_client::__private::serde);
        let derive = quote! {
            #[derive(
                ::std::fmt::Debug,
                ::std::clone::Clone,
                ::std::cmp::PartialEq,
                #serde::Serialize,
                #serde::Deserialize,
            )]
            #[serde(crate = "::wasmrpc_client::__private::serde", rename_all = "kebab-case")]
        };
        match &def.kind {
            TypeDefKind::Record(record) => {
                let fields = record.fields.iter().map(|field| {
                    let name = ident(&snake(&field.name));
                    let rename = field_rename(&name, &field.name);
                    let ty = self.rust_type(field.ty, scope);
                    let doc = docs(&field.docs.contents);
                    quote! {
                        #[doc = #doc]
                        #rename
                        pub #name: #ty,
                    }
                });
                quote! {
                    #[doc = #doc]
                    #derive
                    pub struct #name {
                        #(#fields)*
                    }
                }
            }
            TypeDefKind::Variant(variant) => {
                let cases = variant.cases.iter().map(|case| {
                    let name = ident(&camel(&case.name));
                    let rename = variant_rename(&name, &case.name);
                    let doc = docs(&case.docs.contents);
                    let payload = case.ty.map(|ty| {
                        let ty = self.rust_type(ty, scope);
                        quote!((#ty))
                    });
                    quote! {
                        #[doc = #doc]
                        #rename
                        #name #payload,
                    }
                });
                quote! {
                    #[doc = #doc]
                    #derive
                    pub enum #name {
                        #(#cases)*
                    }
                }
            }
            TypeDefKind::Enum(enum_) => {
                let cases = enum_.cases.iter().map(|case| {
                    let name = ident(&camel(&case.name));
                    let rename = variant_rename(&name, &case.name);
                    let doc = docs(&case.docs.contents);
                    quote! {
                        #[doc = #doc]
                        #rename
                        #name,
                    }
                });
                quote! {
                    #[doc = #doc]
                    #derive
                    #[derive(::std::marker::Copy, ::std::cmp::Eq, ::std::hash::Hash)]
                    pub enum #name {
                        #(#cases)*
                    }
                }
            }
            TypeDefKind::Flags(flags) => self.flags(&name, wit_name, &doc, flags),
            _ => {
                let ty = self.structural_type(&def.kind, scope);
                quote! {
                    #[doc = #doc]
                    pub type #name = #ty;
                }
            }
        }
    }

    /// A flags type: a struct with a `bool` per flag, which travels as the
    /// list of the set flags' names in declaration order.
    fn flags(
        &self,
        name: &Ident,
        wit_name: &str,
        doc: &str,
        flags: &wit_parser::Flags,
    ) -> TokenStream {
        let fields: Vec<Ident> = flags
            .flags
            .iter()
            .map(|flag| ident(&snake(&flag.name)))
            .collect();
        let names: Vec<&str> = flags.flags.iter().map(|flag| flag.name.as_str()).collect();
        let field_docs = flags.flags.iter().map(|flag| docs(&flag.docs.contents));
        let serde = quote!(::wasmrpc_client::__private::serde);
        let expecting = format!("a list of `{wit_name}` flag names");
        let doc = format!(
            "{doc}\n\nA `bool` per flag; on the wire, the list of the set flags' names \
             (`[\"{}\"]` when all are set), in declaration order. Unknown names are refused \
             when reading one.",
            names.join("\", \"")
        );
        quote! {
            #[doc = #doc]
            #[derive(
                ::std::fmt::Debug,
                ::std::clone::Clone,
                ::std::marker::Copy,
                ::std::cmp::PartialEq,
                ::std::cmp::Eq,
                ::std::hash::Hash,
                ::std::default::Default,
            )]
            pub struct #name {
                #(
                    #[doc = #field_docs]
                    pub #fields: bool,
                )*
            }

            impl #serde::Serialize for #name {
                fn serialize<S: #serde::Serializer>(&self, serializer: S)
                    -> ::std::result::Result<S::Ok, S::Error>
                {
                    use #serde::ser::SerializeSeq as _;
                    let set = [#(self.#fields),*];
                    let mut seq = serializer
                        .serialize_seq(::std::option::Option::Some(set.iter().filter(|set| **set).count()))?;
                    #(
                        if self.#fields {
                            seq.serialize_element(#names)?;
                        }
                    )*
                    seq.end()
                }
            }

            impl<'de> #serde::Deserialize<'de> for #name {
                fn deserialize<D: #serde::Deserializer<'de>>(deserializer: D)
                    -> ::std::result::Result<Self, D::Error>
                {
                    struct Visitor;
                    impl<'de> #serde::de::Visitor<'de> for Visitor {
                        type Value = #name;

                        fn expecting(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
                            f.write_str(#expecting)
                        }

                        fn visit_seq<A: #serde::de::SeqAccess<'de>>(self, mut seq: A)
                            -> ::std::result::Result<#name, A::Error>
                        {
                            let mut flags = <#name as ::std::default::Default>::default();
                            while let ::std::option::Option::Some(flag) =
                                seq.next_element::<::std::string::String>()?
                            {
                                match flag.as_str() {
                                    #(#names => flags.#fields = true,)*
                                    other => {
                                        return ::std::result::Result::Err(
                                            <A::Error as #serde::de::Error>::unknown_variant(
                                                other,
                                                &[#(#names),*],
                                            ),
                                        );
                                    }
                                }
                            }
                            ::std::result::Result::Ok(flags)
                        }
                    }
                    deserializer.deserialize_seq(Visitor)
                }
            }
        }
    }

    /// The stub's name for `name` in `scope`: UpperCamelCase, with `Client`
    /// after it when a generated type there has the same name.
    fn stub_name(&self, name: &str, scope: Scope) -> Ident {
        let camel = camel(name);
        let clash = self.types.iter().any(|id| {
            self.scope_of(*id) == scope
                && self.resolve.types[*id]
                    .name
                    .as_deref()
                    .map(crate::names::camel)
                    == Some(camel.clone())
        });
        if clash {
            format_ident!("{camel}Client")
        } else {
            ident(&camel)
        }
    }
}

/// The method for the WIT function or interface `name`.
fn method_ident(name: &str) -> Ident {
    let snake = snake(name);
    if STUB_METHODS.contains(&snake.as_str()) {
        format_ident!("{snake}_")
    } else {
        ident(&snake)
    }
}

fn field_rename(name: &Ident, wit_name: &str) -> Option<TokenStream> {
    (serde_field_name(name) != wit_name).then(|| quote!(#[serde(rename = #wit_name)]))
}

fn variant_rename(name: &Ident, wit_name: &str) -> Option<TokenStream> {
    (serde_variant_name(name) != wit_name).then(|| quote!(#[serde(rename = #wit_name)]))
}

/// The non-empty `parts`, as paragraphs of one doc text.
fn paragraphs(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// WIT doc text, as the text of a `#[doc]` attribute (empty if none).
fn docs(contents: &Option<String>) -> String {
    contents.clone().unwrap_or_default()
}

/// Whether the host serves `function` (PROTOCOL.md §8.6): a plain function
/// whose types hold no resource, future, stream or error context.
fn callable(resolve: &Resolve, function: &Function) -> bool {
    matches!(function.kind, FunctionKind::Freestanding)
        && function
            .params
            .iter()
            .map(|param| param.ty)
            .chain(function.result)
            .all(|ty| plain(resolve, ty))
}

fn plain(resolve: &Resolve, ty: Type) -> bool {
    let Type::Id(id) = ty else {
        return ty != Type::ErrorContext;
    };
    match &resolve.types[id].kind {
        TypeDefKind::Record(record) => record.fields.iter().all(|field| plain(resolve, field.ty)),
        TypeDefKind::Variant(variant) => variant
            .cases
            .iter()
            .all(|case| case.ty.is_none_or(|ty| plain(resolve, ty))),
        TypeDefKind::Tuple(tuple) => tuple.types.iter().all(|ty| plain(resolve, *ty)),
        TypeDefKind::Option(ty)
        | TypeDefKind::List(ty)
        | TypeDefKind::FixedLengthList(ty, _)
        | TypeDefKind::Type(ty) => plain(resolve, *ty),
        TypeDefKind::Result(result) => result
            .ok
            .iter()
            .chain(&result.err)
            .all(|ty| plain(resolve, *ty)),
        TypeDefKind::Map(key, value) => plain(resolve, *key) && plain(resolve, *value),
        TypeDefKind::Flags(_) | TypeDefKind::Enum(_) => true,
        TypeDefKind::Resource
        | TypeDefKind::Handle(Handle::Own(_) | Handle::Borrow(_))
        | TypeDefKind::Future(_)
        | TypeDefKind::Stream(_)
        | TypeDefKind::Unknown => false,
    }
}
