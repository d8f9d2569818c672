//! Reading a knowledge base's documents without reading all of them every run. The list is
//! newest first and reports `total`, and every document carries its whole content twice, so
//! what an earlier run saw is remembered ([`KbRecord`]) and only the new front of the list
//! is read: a one-document probe says whether anything changed at all, and pages are read
//! until they meet a remembered document after which the remembered tail adds up to `total`.
//! Documents of that tail still indexing are brought up to date by the list's `status`
//! filter (Dify 1.10.1+; older ones read on down). Anything that does not add up is read in
//! full.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use super::documents::{classify, DocState, KbDocument};
use crate::dify::knowledge::{ApiError, ApiErrorKind, KnowledgeApi, Page, MAX_PAGE};

/// Whole listings tried when the list changes under the reader.
const LISTING_TRIES: usize = 3;
/// Pages read at most (200,000 documents): a server that reports an endless list is not
/// followed forever.
const MAX_PAGES: usize = 2000;
/// The display statuses of a document not done indexing, or failed: what the `status`
/// filter is asked for to bring remembered documents still indexing up to date.
const NOT_DONE: [&str; 4] = ["queuing", "indexing", "paused", "error"];
/// Pages of one status read at most; more reads the list instead.
const MAX_STATUS_PAGES: usize = 5;
/// Documents beyond which asking by status (a request per status) is fewer requests than
/// reading the pages.
const STATUS_WORTH: usize = NOT_DONE.len() * MAX_PAGE;

/// What mirroring remembers of one knowledge base for one configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbRecord {
    /// `total` of the list when it was read.
    pub total: usize,
    /// Every document (ours in full, others by id), newest first.
    pub docs: Vec<KbDocument>,
    /// The commit at which the plan had nothing left to do.
    #[serde(default)]
    pub settled: Option<String>,
    /// `(path, blob)` of files the crawl skips for good (binary, too large, …).
    #[serde(default)]
    pub skipped: Vec<(String, String)>,
    /// The state store holds this very record.
    #[serde(skip)]
    pub stored: bool,
    /// The chunks of the store's copy (`record.rs`): those a save need not write again.
    #[serde(skip)]
    pub chunks: Vec<String>,
}

impl KbRecord {
    /// The permanent skips as (path → blob).
    pub fn skipped_entries(&self) -> crate::store::snapshot::Entries {
        self.skipped
            .iter()
            .filter_map(|(path, blob)| Some((path.clone(), git2::Oid::from_str(blob).ok()?)))
            .collect()
    }
}

/// A fresh view of the knowledge base.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Every document, newest first; `None` when nothing changed since `known`.
    pub docs: Option<Vec<KbDocument>>,
    pub total: usize,
    /// Nothing changed since the remembered record.
    pub unchanged: bool,
    pub requests: usize,
}

/// A remembered document that may still change without showing at the list's front.
fn unsettled(doc: &KbDocument) -> bool {
    doc.ours
        .as_ref()
        .is_some_and(|o| o.state == DocState::Indexing)
}

/// Lists the knowledge base's documents, reading only what `known` cannot tell.
pub async fn list(
    api: &KnowledgeApi,
    dataset: &str,
    prefixes: &[String],
    known: Option<&KbRecord>,
) -> Result<Listing, ApiError> {
    let probe = api.list(dataset, 1, 1).await?;
    let mut requests = 1;
    if let Some(known) = known {
        let same_front =
            probe.data.first().map(|d| d.id.as_str()) == known.docs.first().map(|d| d.id.as_str());
        let same = same_front && probe.total == known.total;
        if same && !known.docs.iter().any(unsettled) {
            return Ok(Listing {
                docs: None,
                total: known.total,
                unchanged: true,
                requests,
            });
        }
        // Nothing new at the front and nothing gone, only documents still indexing: their
        // state by status, where that is fewer requests than the pages.
        if same && known.docs.len() > STATUS_WORTH {
            let refreshed =
                refresh_by_status(api, dataset, prefixes, &known.docs, &mut requests).await?;
            if let Some(docs) = refreshed {
                return Ok(Listing {
                    total: docs.len(),
                    docs: Some(docs),
                    unchanged: false,
                    requests,
                });
            }
        }
    }
    let position: HashMap<&str, usize> = known
        .map(|k| {
            k.docs
                .iter()
                .enumerate()
                .map(|(i, d)| (d.id.as_str(), i))
                .collect()
        })
        .unwrap_or_default();
    for _ in 0..LISTING_TRIES {
        let mut fresh: Vec<KbDocument> = Vec::new();
        let mut seen = HashSet::new();
        let mut total = None;
        let mut page = 1;
        let consistent = loop {
            let answer = read_page(api, dataset, page, MAX_PAGE, &mut requests).await?;
            if total.is_some_and(|t| t != answer.total) {
                break false;
            }
            total = Some(answer.total);
            let got = answer.data.len();
            for raw in &answer.data {
                if seen.insert(raw.id.clone()) {
                    fresh.push(classify(raw, prefixes));
                }
            }
            if let (Some(known), Some(last)) = (known, fresh.last()) {
                if let Some(&at) = position.get(last.id.as_str()) {
                    let tail = &known.docs[at + 1..];
                    if fresh.len() + tail.len() == answer.total {
                        if !tail.iter().any(unsettled) {
                            fresh.extend_from_slice(tail);
                            break true;
                        }
                        // Documents still indexing deep in the list: their state now, by
                        // status, rather than every page down to them.
                        if tail.len() > STATUS_WORTH {
                            let refreshed =
                                refresh_by_status(api, dataset, prefixes, tail, &mut requests)
                                    .await?;
                            if let Some(tail) = refreshed {
                                fresh.extend(tail);
                                break true;
                            }
                        }
                    }
                }
            }
            if got < MAX_PAGE || page * MAX_PAGE >= answer.total {
                break fresh.len() == answer.total;
            }
            if page >= MAX_PAGES {
                return Err(ApiError {
                    kind: ApiErrorKind::Other,
                    status: None,
                    message: format!(
                        "GET /datasets/{dataset}/documents: more than {MAX_PAGES} pages; mirroring \
                         reads knowledge bases of at most {} documents",
                        MAX_PAGES * MAX_PAGE
                    ),
                });
            }
            page += 1;
        };
        if consistent {
            return Ok(Listing {
                total: fresh.len(),
                docs: Some(fresh),
                unchanged: false,
                requests,
            });
        }
        tracing::debug!("the document list changed while it was read; reading it again");
    }
    Err(ApiError {
        kind: ApiErrorKind::Other,
        status: None,
        message: format!(
            "GET /datasets/{dataset}/documents: the list kept changing while it was read \
             ({LISTING_TRIES} tries)"
        ),
    })
}

/// `tail` (remembered, and known complete: the list's count adds up) with the documents
/// that were still indexing brought up to date through the list's `status` filter (Dify
/// 1.10.1+): a document queuing, indexing, paused or failed now is listed under that status;
/// one that was indexing and is listed under none has completed. `None` where the filter is
/// not honoured (an older Dify answers documents of every status) or a status holds more
/// than a few pages: the caller reads the list instead.
async fn refresh_by_status(
    api: &KnowledgeApi,
    dataset: &str,
    prefixes: &[String],
    tail: &[KbDocument],
    requests: &mut usize,
) -> Result<Option<Vec<KbDocument>>, ApiError> {
    let mut now: HashMap<String, KbDocument> = HashMap::new();
    for status in NOT_DONE {
        for page in 1.. {
            *requests += 1;
            let answer = api.list_by_status(dataset, status, page).await?;
            if answer
                .data
                .iter()
                .any(|d| d.display_status.as_deref() != Some(status))
            {
                return Ok(None);
            }
            for raw in &answer.data {
                now.insert(raw.id.clone(), classify(raw, prefixes));
            }
            if answer.data.len() < MAX_PAGE || page * MAX_PAGE >= answer.total {
                break;
            }
            if page >= MAX_STATUS_PAGES {
                return Ok(None);
            }
        }
    }
    let refreshed = tail.iter().map(|doc| match now.remove(&doc.id) {
        Some(fresh) => fresh,
        None if unsettled(doc) => {
            let mut done = doc.clone();
            if let Some(ours) = done.ours.as_mut() {
                ours.state = DocState::Indexed;
            }
            done
        }
        None => doc.clone(),
    });
    Ok(Some(refreshed.collect()))
}

/// Page `page` of `limit` documents. One whose answer is too large to hold (large documents
/// carry their content twice) is read as ten pages of a tenth of the size, down to pages of
/// one: memory stays bounded by the answer cap, whatever the documents hold.
fn read_page<'a>(
    api: &'a KnowledgeApi,
    dataset: &'a str,
    page: usize,
    limit: usize,
    requests: &'a mut usize,
) -> Pin<Box<dyn Future<Output = Result<Page, ApiError>> + Send + 'a>> {
    Box::pin(async move {
        *requests += 1;
        match api.list(dataset, page, limit).await {
            Err(error) if error.kind == ApiErrorKind::TooLarge && limit > 1 => {}
            answer => return answer,
        }
        let part = limit / 10;
        let mut whole = Page {
            data: Vec::new(),
            total: 0,
        };
        for tenth in 0..10 {
            let piece =
                read_page(api, dataset, (page - 1) * 10 + tenth + 1, part, requests).await?;
            let done = piece.data.len() < part;
            whole.total = piece.total;
            whole.data.extend(piece.data);
            if done {
                break;
            }
        }
        Ok(whole)
    })
}
