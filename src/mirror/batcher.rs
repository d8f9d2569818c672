//! Grouping documents into pipeline runs bounded by count and bytes, in order.

use git2::Oid;

/// One run's documents: serialized items and the files they hold.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Vec<u8>>,
    pub files: Vec<(String, Oid)>,
    pub bytes: usize,
}

/// Groups documents into runs. The first run holds one document: a run Dify refuses (a
/// required process input missing) has already created its documents, so the first one is
/// sent alone to find out cheaply.
#[derive(Debug)]
pub struct Batcher {
    max_items: usize,
    max_bytes: usize,
    closed: usize,
    open: Batch,
}

impl Batcher {
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        Batcher {
            max_items: max_items.max(1),
            max_bytes,
            closed: 0,
            open: Batch::default(),
        }
    }

    /// Adds one document; returns the run it closes, if any.
    pub fn add(&mut self, item: Vec<u8>, file: (String, Oid)) -> Option<Batch> {
        let limit = if self.closed == 0 { 1 } else { self.max_items };
        let full = self.open.items.len() >= limit || self.open.bytes + item.len() > self.max_bytes;
        let closed = (full && !self.open.items.is_empty()).then(|| self.take());
        self.open.bytes += item.len();
        self.open.items.push(item);
        self.open.files.push(file);
        closed
    }

    /// The last, partly filled run.
    pub fn finish(&mut self) -> Option<Batch> {
        (!self.open.items.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Batch {
        self.closed += 1;
        std::mem::take(&mut self.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn runs_keep_every_document_in_order_within_bounds(
            sizes in prop::collection::vec(1usize..5000, 0..300),
            max_items in 1usize..40,
            max_bytes in 1000usize..20_000,
        ) {
            let mut batcher = Batcher::new(max_items, max_bytes);
            let mut runs = Vec::new();
            for (n, size) in sizes.iter().enumerate() {
                let file = (format!("f{n}"), Oid::zero());
                runs.extend(batcher.add(vec![b'x'; *size], file));
            }
            runs.extend(batcher.finish());
            let order: Vec<String> = runs.iter().flat_map(|r| r.files.iter().map(|f| f.0.clone())).collect();
            let expected: Vec<String> = (0..sizes.len()).map(|n| format!("f{n}")).collect();
            prop_assert_eq!(order, expected);
            for (n, run) in runs.iter().enumerate() {
                prop_assert!(!run.items.is_empty());
                prop_assert_eq!(run.bytes, run.items.iter().map(Vec::len).sum::<usize>());
                let most = if n == 0 { 1 } else { max_items };
                prop_assert!(run.items.len() <= most);
                prop_assert!(run.items.len() == 1 || run.bytes <= max_bytes);
            }
            // Runs are as full as the bounds allow: a run closes only when the next
            // document does not fit.
            for pair in runs.windows(2).skip(1) {
                let next = pair[1].items[0].len();
                prop_assert!(pair[0].items.len() == max_items || pair[0].bytes + next > max_bytes);
            }
        }
    }
}
