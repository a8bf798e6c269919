//! etcd's watch machinery, per member (every member applies the same log, so a watch on a
//! follower sees what one on the leader sees).
//!
//! - [`event`]: an event with its wire encoding, made once for every watcher that gets it;
//! - [`hub`]: the bounded window of recent events the apply loop publishes into, without ever
//!   waiting for a watcher, and the latest published revision;
//! - [`stream`]: one task per client stream serving all of its watchers — synced watchers from
//!   the hub, slow or historical ones from redb — in revision order, exactly once;
//! - [`watcher`]: one watcher's keys, options and position;
//! - [`watcher_group`]: watchers indexed by key, to route a chunk of events;
//! - [`response`]: the responses exactly as etcd shapes them, and fragmentation.
//!
//! The gRPC service in front of it is `crate::server::watch`.

pub mod event;
pub mod hub;
pub mod response;
pub mod stream;
pub mod watcher;
pub mod watcher_group;

pub use hub::{RingBounds, WatchHub};
pub use stream::{Request, StreamOptions};
pub use watcher::CreateWatch;
