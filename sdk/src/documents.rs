//! JSON documents in named collections, addressed by key, each with a version.
//!
//! Reads see what is committed plus this invocation's own staged writes.
//! Writes are staged, and the host commits them only if the handler returns
//! `Ok`. Every document the handler read is checked again at commit: if
//! another request changed it meanwhile, the host runs the handler again.
//! Collections and keys belong to the function's tenant; no name reaches
//! another tenant's data.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use sluice_sdk::{documents::Collection, Error};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Counter { count: u64 }
//!
//! fn bump(name: &str) -> Result<u64, Error> {
//!     let counters = Collection::<Counter>::open("counters");
//!     let count = counters.get(name)?.map_or(0, |doc| doc.value.count) + 1;
//!     counters.put(name, &Counter { count })?;
//!     Ok(count)
//! }
//! ```

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CallError;
use crate::pages::{Lister, Pages};
use crate::wit::sluice::function::documents as wit;

/// How many documents [`Collection::list_all`] asks the host for at a time.
const LIST_ALL_PAGE: u32 = 100;

/// A collection whose documents are all `T`, stored as JSON.
///
/// Opening a collection makes no call to the host: a name the host does not
/// accept is reported by the first call that uses it.
///
/// ```no_run
/// use sluice_sdk::documents::Collection;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Profile { display_name: String }
///
/// let profiles = Collection::<Profile>::open("profiles");
/// ```
pub struct Collection<T> {
    name: String,
    value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Collection<T> {
    /// The collection called `name`.
    ///
    /// ```no_run
    /// # use sluice_sdk::documents::Collection;
    /// let names = Collection::<String>::open("names");
    /// ```
    pub fn open(name: impl AsRef<str>) -> Self {
        Self {
            name: name.as_ref().to_owned(),
            value: PhantomData,
        }
    }

    /// The collection's name.
    ///
    /// ```no_run
    /// # use sluice_sdk::documents::Collection;
    /// assert_eq!(Collection::<String>::open("names").name(), "names");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The document at `key`, or `None`.
    ///
    /// A stored value that does not deserialize into `T` is an error that
    /// names the key (a 500 in a handler, given up in a consumer).
    ///
    /// ```no_run
    /// # use sluice_sdk::{documents::Collection, Error};
    /// # fn f() -> Result<(), Error> {
    /// let names = Collection::<String>::open("names");
    /// if let Some(doc) = names.get("alice")? {
    ///     println!("{} is {} (version {})", doc.key, doc.value, doc.version);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get(&self, key: impl AsRef<str>) -> Result<Option<Document<T>>, CallError> {
        wit::get(&self.name, key.as_ref())?
            .map(|doc| self.decode(doc))
            .transpose()
    }

    /// Stages `value` at `key`, creating or replacing the document.
    ///
    /// ```no_run
    /// # use sluice_sdk::{documents::Collection, Error};
    /// # fn f() -> Result<(), Error> {
    /// Collection::<String>::open("names").put("alice", &"Alice".to_owned())?;
    /// # Ok(()) }
    /// ```
    pub fn put(&self, key: impl AsRef<str>, value: &T) -> Result<(), CallError> {
        let json = serde_json::to_string(value)?;
        wit::put(&self.name, key.as_ref(), &json)?;
        Ok(())
    }

    /// Stages the removal of `key`; `true` if there was a document to remove.
    ///
    /// ```no_run
    /// # use sluice_sdk::{documents::Collection, Error};
    /// # fn f() -> Result<(), Error> {
    /// if !Collection::<String>::open("names").delete("alice")? {
    ///     return Err(Error::not_found("no such name"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn delete(&self, key: impl AsRef<str>) -> Result<bool, CallError> {
        Ok(wit::delete(&self.name, key.as_ref())?)
    }

    /// Up to `limit` documents whose key starts with `prefix`, in key order,
    /// starting after `cursor` (a [`Page::next_cursor`] from an earlier call).
    /// The host caps `limit` at 1000.
    ///
    /// ```no_run
    /// # use sluice_sdk::{documents::Collection, Error};
    /// # fn f() -> Result<(), Error> {
    /// let names = Collection::<String>::open("names");
    /// let first = names.list("a", 20, None)?;
    /// if let Some(cursor) = &first.next_cursor {
    ///     let second = names.list("a", 20, Some(cursor))?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list(
        &self,
        prefix: impl AsRef<str>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<T>, CallError> {
        let page = wit::list(&self.name, prefix.as_ref(), limit, cursor)?;
        Ok(Page {
            documents: page
                .documents
                .into_iter()
                .map(|doc| self.decode(doc))
                .collect::<Result<_, _>>()?,
            next_cursor: page.next_cursor,
        })
    }

    /// Every document whose key starts with `prefix`, in key order, fetched
    /// a page at a time as the iterator advances. After an error it ends.
    ///
    /// ```no_run
    /// # use sluice_sdk::{documents::Collection, Error};
    /// # fn f() -> Result<(), Error> {
    /// let names: Vec<String> = Collection::<String>::open("names")
    ///     .list_all("")
    ///     .map(|doc| doc.map(|doc| doc.value))
    ///     .collect::<Result<_, _>>()?;
    /// # Ok(()) }
    /// ```
    pub fn list_all(
        &self,
        prefix: impl AsRef<str>,
    ) -> impl Iterator<Item = Result<Document<T>, CallError>> + '_ {
        Pages::new(ListAll {
            collection: self,
            prefix: prefix.as_ref().to_owned(),
        })
    }

    fn decode(&self, doc: wit::Document) -> Result<Document<T>, CallError> {
        match serde_json::from_str(&doc.value) {
            Ok(value) => Ok(Document {
                key: doc.key,
                value,
                version: doc.version,
            }),
            Err(err) => Err(CallError::permanent(format!(
                "document `{}` in collection `{}` is not a valid {}: {err}",
                doc.key,
                self.name,
                std::any::type_name::<T>(),
            ))),
        }
    }
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name)
            .finish()
    }
}

/// A stored document.
///
/// ```no_run
/// # use sluice_sdk::{documents::Collection, Error};
/// # fn f() -> Result<(), Error> {
/// let doc = Collection::<u64>::open("scores").get("alice")?;
/// let score = doc.map_or(0, |doc| doc.value);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<T> {
    /// The key it is stored under.
    pub key: String,
    /// The document itself.
    pub value: T,
    /// Incremented by every committed write, starting at 1. A document
    /// written earlier in this invocation reports the version it will be
    /// committed with, or 0 when that is not yet known (a write without a
    /// read before it).
    pub version: u64,
}

/// One page of a [`Collection::list`].
///
/// ```no_run
/// # use sluice_sdk::{documents::Collection, Error};
/// # fn f() -> Result<(), Error> {
/// let page = Collection::<u64>::open("scores").list("", 50, None)?;
/// let keys: Vec<&str> = page.documents.iter().map(|doc| doc.key.as_str()).collect();
/// let more = page.next_cursor.is_some();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The documents, in key order.
    pub documents: Vec<Document<T>>,
    /// Pass to [`Collection::list`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The pages behind [`Collection::list_all`].
struct ListAll<'a, T> {
    collection: &'a Collection<T>,
    prefix: String,
}

impl<T: Serialize + DeserializeOwned> Lister for ListAll<'_, T> {
    type Item = Document<T>;

    fn page(&self, cursor: Option<&str>) -> Result<(Vec<Document<T>>, Option<String>), CallError> {
        let page = self.collection.list(&self.prefix, LIST_ALL_PAGE, cursor)?;
        Ok((page.documents, page.next_cursor))
    }
}

/// Only `unavailable` may pass: the host refused a name, key or value the
/// function chose, or a per-invocation limit was reached, and either would
/// happen again on every attempt.
impl From<wit::Error> for CallError {
    fn from(err: wit::Error) -> Self {
        match err {
            wit::Error::Invalid(message) => {
                CallError::permanent(format!("documents: invalid argument: {message}"))
            }
            wit::Error::LimitExceeded(message) => {
                CallError::permanent(format!("documents: limit exceeded: {message}"))
            }
            wit::Error::Unavailable(message) => {
                CallError::transient(format!("documents: store unavailable: {message}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, MessageError};

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Counter {
        count: u64,
    }

    fn stored(value: &str) -> wit::Document {
        wit::Document {
            key: "hits".to_owned(),
            value: value.to_owned(),
            version: 3,
        }
    }

    #[test]
    fn a_stored_value_decodes_into_t() {
        let doc = Collection::<Counter>::open("counters").decode(stored(r#"{"count":2}"#));
        assert_eq!(
            doc,
            Ok(Document {
                key: "hits".to_owned(),
                value: Counter { count: 2 },
                version: 3,
            })
        );
    }

    #[test]
    fn a_stored_value_of_another_shape_is_permanent_and_names_the_key() {
        let err = Collection::<Counter>::open("counters")
            .decode(stored(r#"{"total":2}"#))
            .expect_err("must fail");
        assert!(!err.is_transient());
        assert!(
            err.message().contains("`hits`") && err.message().contains("`counters`"),
            "{err:?}"
        );
    }

    /// In a handler all three are a 500 (see `call`); in a consumer only an
    /// unavailable store is worth a retry.
    #[test]
    fn only_an_unavailable_store_is_transient() {
        for (err, transient) in [
            (wit::Error::Invalid("key too long".to_owned()), false),
            (
                wit::Error::LimitExceeded("too many writes".to_owned()),
                false,
            ),
            (wit::Error::Unavailable("disk".to_owned()), true),
        ] {
            let err = CallError::from(err);
            assert_eq!(err.is_transient(), transient, "{err:?}");
            assert!(matches!(Error::from(err.clone()), Error::Internal(_)));
            let retried = matches!(MessageError::from(err), MessageError::Retry(_));
            assert_eq!(retried, transient);
        }
    }
}
