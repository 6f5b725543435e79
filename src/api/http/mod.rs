//! The API of an HTTP server: the request (`Request`, `Var`, `Headers`,
//! `Connection`, `Server`, the response methods of `Nginx`), filters,
//! `Async`, and the classes that serve the other HTTP hosts (`SSL` in a
//! handshake, `add_listener` in a server block) or the whole server
//! (`Upstream`, `Vlimit`). Each method finds its request or handshake
//! through `host::current()`.

pub mod async_;
pub mod connection;
pub mod filter;
pub mod headers;
pub mod listener;
pub mod request;
pub mod resource;
pub mod response;
pub mod server;
pub mod ssl;
pub mod upstream;
pub mod var;
pub mod vlimit;
