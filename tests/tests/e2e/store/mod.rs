//! What functions keep: blobs and the cache.

mod blobs;
mod cache;
