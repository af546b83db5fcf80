//! The route table's verbs (`get(handler).post(other)`, as axum's), which
//! also record, for each method, what its handler reads, found from the
//! handler's own argument types (its extractors: a `Json<T>` body, the
//! query string, a raw upload, a websocket). The router and the OpenAPI
//! document ([`crate::openapi`]) are both made from this one table, so a
//! route cannot be served without being described, nor described without
//! being served.

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::handler::Handler;
use axum::http::HeaderMap;
use axum::routing::{self, MethodRouter};
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::AppState;

/// Makes the JSON schema of a body type (a reference into the generator's
/// definitions).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// What a handler reads of its request besides the path.
#[derive(Clone, Copy, Default)]
pub struct Takes {
    /// The schema of its JSON body, when it reads one.
    pub json: Option<SchemaFn>,
    /// It reads the body as bytes (an upload, a file, a tarball).
    pub raw: bool,
    /// It reads the query string (`?recursion=`, `?project=`, …).
    pub query: bool,
    /// It upgrades the connection to a websocket.
    pub websocket: bool,
    /// Query keys it reads by hand besides LXD's own (`?path=` of a file
    /// route), declared in the table ([`Methods::query`]).
    pub keys: &'static [&'static str],
}

/// An argument type of a handler, described: what it takes from the request.
pub trait Extractor {
    /// Adds what this extractor reads to `takes`.
    fn describe(takes: &mut Takes);
}

/// A handler's argument list (axum's `Handler<T, _>` parameter `T`).
pub trait Arguments {
    /// What the handler reads, all its arguments together.
    fn takes() -> Takes;
}

impl<S> Extractor for State<S> {
    fn describe(_: &mut Takes) {}
}

impl<T> Extractor for Path<T> {
    fn describe(_: &mut Takes) {}
}

impl Extractor for HeaderMap {
    fn describe(_: &mut Takes) {}
}

impl<T> Extractor for Query<T> {
    fn describe(takes: &mut Takes) {
        takes.query = true;
    }
}

impl<T: JsonSchema> Extractor for crate::body::Json<T> {
    fn describe(takes: &mut Takes) {
        takes.json = Some(|g: &mut SchemaGenerator| g.subschema_for::<T>());
    }
}

impl Extractor for Body {
    fn describe(takes: &mut Takes) {
        takes.raw = true;
    }
}

/// The whole request: its handler decides how to read the body (by its
/// `Content-Type`); the table says which JSON type it may be
/// ([`Methods::json`]).
impl Extractor for axum::extract::Request {
    fn describe(takes: &mut Takes) {
        takes.raw = true;
    }
}

impl Extractor for WebSocketUpgrade {
    fn describe(takes: &mut Takes) {
        takes.websocket = true;
    }
}

/// A handler of no arguments.
impl Arguments for ((),) {
    fn takes() -> Takes {
        Takes::default()
    }
}

macro_rules! arguments {
    ($($ty:ident),+) => {
        impl<M, $($ty: Extractor),+> Arguments for (M, $($ty,)+) {
            fn takes() -> Takes {
                let mut takes = Takes::default();
                $($ty::describe(&mut takes);)+
                takes
            }
        }
    };
}

arguments!(T1);
arguments!(T1, T2);
arguments!(T1, T2, T3);
arguments!(T1, T2, T3, T4);
arguments!(T1, T2, T3, T4, T5);
arguments!(T1, T2, T3, T4, T5, T6);

/// One method of a route and what its handler reads.
#[derive(Clone, Copy)]
pub struct Op {
    /// `GET`, `POST`, …
    pub method: &'static str,
    /// What its handler reads.
    pub takes: Takes,
}

/// A route's methods: the axum method router and their descriptions.
pub struct Methods {
    pub(crate) router: MethodRouter<AppState>,
    pub(crate) ops: Vec<Op>,
}

impl Methods {
    /// Declares the JSON body of the last method added, for a handler that
    /// reads its body itself (by its `Content-Type`) rather than through a
    /// `Json<T>` argument.
    pub fn json<T: JsonSchema>(mut self) -> Methods {
        if let Some(op) = self.ops.last_mut() {
            op.takes.json = Some(|g: &mut SchemaGenerator| g.subschema_for::<T>());
        }
        self
    }

    /// Declares the query keys the last method's handler reads by hand
    /// (its query is a map, so its type cannot say which).
    pub fn query(mut self, keys: &'static [&'static str]) -> Methods {
        if let Some(op) = self.ops.last_mut() {
            op.takes.keys = keys;
        }
        self
    }
}

macro_rules! verbs {
    ($($name:ident $method:literal),+) => {
        $(
            #[doc = concat!("A route answering `", $method, "` with `handler`.")]
            pub fn $name<H, T>(handler: H) -> Methods
            where
                H: Handler<T, AppState>,
                T: Arguments + 'static,
            {
                Methods {
                    router: routing::$name(handler),
                    ops: vec![Op { method: $method, takes: T::takes() }],
                }
            }
        )+

        impl Methods {
            $(
                #[doc = concat!("Adds `", $method, "`, answered by `handler`.")]
                pub fn $name<H, T>(mut self, handler: H) -> Methods
                where
                    H: Handler<T, AppState>,
                    T: Arguments + 'static,
                {
                    self.router = self.router.$name(handler);
                    self.ops.push(Op { method: $method, takes: T::takes() });
                    self
                }
            )+
        }
    };
}

verbs!(get "GET", post "POST", put "PUT", patch "PATCH", delete "DELETE");
