//! The imports of `sluice:function@0.1.0`, for components built before
//! 0.2.0: the same functions under the old package's names. They delegate
//! to the current implementations; the interfaces did not change between
//! the versions, so every conversion is field for field.

use super::super::bindings::legacy::sluice::function as old;
use super::super::bindings::sluice::function as new;
use crate::runtime::state::Capabilities;

/// `From` both ways between two records with the same fields.
macro_rules! same_record {
    ($a:ty, $b:ty { $($field:ident),* $(,)? }) => {
        impl From<$a> for $b {
            fn from(x: $a) -> Self {
                Self { $($field: x.$field.into()),* }
            }
        }
        impl From<$b> for $a {
            fn from(x: $b) -> Self {
                Self { $($field: x.$field.into()),* }
            }
        }
    };
}

/// `From` one way between two variants whose cases all carry a string.
macro_rules! same_variant {
    ($from:path => $to:path { $($case:ident),* $(,)? }) => {
        impl From<$from> for $to {
            fn from(x: $from) -> Self {
                use $from as F;
                match x {
                    $(F::$case(m) => Self::$case(m)),*
                }
            }
        }
    };
}

same_record!(
    old::documents::Document,
    new::documents::Document {
        key,
        value,
        version
    }
);
same_variant!(new::documents::Error => old::documents::Error { Invalid, LimitExceeded, Unavailable });
same_record!(
    old::blobs::Metadata,
    new::blobs::Metadata {
        name,
        size,
        content_type,
        etag,
        created
    }
);
same_record!(
    old::blobs::UploadInfo,
    new::blobs::UploadInfo {
        content_type,
        size,
        etag
    }
);
same_variant!(new::blobs::Error => old::blobs::Error { Invalid, LimitExceeded, Unavailable });
same_record!(
    old::queue::SendOptions,
    new::queue::SendOptions {
        delay_ms,
        idempotency_key
    }
);
same_variant!(new::queue::Error => old::queue::Error { Invalid, LimitExceeded });
same_variant!(new::cache::Error => old::cache::Error { Invalid, TooLarge, NotACounter });

/// A current answer as the old package's.
fn old<T, U: From<T>, E, F: From<E>>(answer: Result<T, E>) -> Result<U, F> {
    answer.map(U::from).map_err(F::from)
}

/// An optional current value as the old package's.
fn some<T, U: From<T>>(value: Option<T>) -> Option<U> {
    value.map(U::from)
}

impl old::types::Host for Capabilities {}

impl old::documents::Host for Capabilities {
    async fn get(
        &mut self,
        collection: String,
        key: String,
    ) -> Result<Option<old::documents::Document>, old::documents::Error> {
        let got = new::documents::Host::get(self, collection, key).await;
        got.map(some).map_err(Into::into)
    }

    fn put(
        &mut self,
        collection: String,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), old::documents::Error>> {
        Ok(old(new::documents::Host::put(
            self, collection, key, value,
        )?))
    }

    async fn delete(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, old::documents::Error>> {
        Ok(old(
            new::documents::Host::delete(self, collection, key).await?
        ))
    }

    async fn list(
        &mut self,
        collection: String,
        prefix: String,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<old::documents::Page, old::documents::Error> {
        let page = new::documents::Host::list(self, collection, prefix, limit, cursor).await?;
        Ok(old::documents::Page {
            documents: page.documents.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        })
    }
}

impl old::blobs::Host for Capabilities {
    async fn put(
        &mut self,
        name: String,
        content_type: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<old::blobs::Metadata, old::blobs::Error>> {
        Ok(old(
            new::blobs::Host::put(self, name, content_type, data).await?
        ))
    }

    async fn get(&mut self, name: String) -> Result<Option<Vec<u8>>, old::blobs::Error> {
        old(new::blobs::Host::get(self, name).await)
    }

    async fn get_range(
        &mut self,
        name: String,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, old::blobs::Error> {
        old(new::blobs::Host::get_range(self, name, offset, length).await)
    }

    async fn head(
        &mut self,
        name: String,
    ) -> Result<Option<old::blobs::Metadata>, old::blobs::Error> {
        let head = new::blobs::Host::head(self, name).await;
        head.map(some).map_err(Into::into)
    }

    async fn delete(&mut self, name: String) -> wasmtime::Result<Result<bool, old::blobs::Error>> {
        Ok(old(new::blobs::Host::delete(self, name).await?))
    }

    async fn list(
        &mut self,
        prefix: String,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<old::blobs::Page, old::blobs::Error> {
        let page = new::blobs::Host::list(self, prefix, limit, cursor).await?;
        Ok(old::blobs::Page {
            blobs: page.blobs.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        })
    }

    fn upload(&mut self) -> Option<old::blobs::UploadInfo> {
        some(new::blobs::Host::upload(self))
    }

    fn keep_upload(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<old::blobs::Metadata, old::blobs::Error>> {
        Ok(old(new::blobs::Host::keep_upload(self, name)?))
    }
}

impl old::queue::Host for Capabilities {
    fn send(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        options: old::queue::SendOptions,
    ) -> wasmtime::Result<Result<(), old::queue::Error>> {
        Ok(old(new::queue::Host::send(
            self,
            topic,
            payload,
            options.into(),
        )?))
    }
}

impl old::cache::Host for Capabilities {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, old::cache::Error> {
        old(new::cache::Host::get(self, key))
    }

    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), old::cache::Error> {
        old(new::cache::Host::set(self, key, value, ttl_ms))
    }

    fn delete(&mut self, key: String) -> Result<bool, old::cache::Error> {
        old(new::cache::Host::delete(self, key))
    }

    fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, old::cache::Error> {
        old(new::cache::Host::increment(self, key, delta, ttl_ms))
    }
}
