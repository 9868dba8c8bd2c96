//! Paging through a listing: what every `list_all` iterator shares.

use crate::CallError;

/// Fetches one page of a listing after `cursor`: its items and the cursor
/// of the next page, `None` on the last.
pub(crate) trait Lister {
    /// What the listing holds.
    type Item;

    /// The page after `cursor` (the first page for `None`).
    fn page(&self, cursor: Option<&str>) -> Result<(Vec<Self::Item>, Option<String>), CallError>;
}

/// Every item of a listing, one page fetched at a time as it advances. After
/// an error it ends.
pub(crate) struct Pages<L: Lister> {
    lister: L,
    page: std::vec::IntoIter<L::Item>,
    cursor: Option<String>,
    done: bool,
}

impl<L: Lister> Pages<L> {
    /// Nothing fetched yet: the first page is fetched by the first `next`.
    pub(crate) fn new(lister: L) -> Self {
        Self {
            lister,
            page: Vec::new().into_iter(),
            cursor: None,
            done: false,
        }
    }
}

impl<L: Lister + std::fmt::Debug> std::fmt::Debug for Pages<L>
where
    L::Item: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("lister", &self.lister)
            .field("page", &self.page)
            .field("cursor", &self.cursor)
            .field("done", &self.done)
            .finish()
    }
}

impl<L: Lister> Iterator for Pages<L> {
    type Item = Result<L::Item, CallError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.page.next() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.lister.page(self.cursor.as_deref()) {
                Ok((items, next)) => {
                    self.page = items.into_iter();
                    self.done = next.is_none();
                    self.cursor = next;
                }
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
    }
}
