//! Building the one final `completed` message within the run's byte budget: each document
//! is serialized once and appended; the envelope is written around them at the end.

use crate::repository::identity::Document;

/// Room kept for the message's own fields (`status`, `total`, `completed`, brackets).
const WRAPPER_RESERVE: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Added,
    /// The budget is spent: this document and the rest wait for the next run.
    Full,
    /// The document alone (this many bytes as JSON) is larger than the whole budget: it can
    /// never be delivered.
    TooLarge(usize),
}

/// The documents of the final message, serialized and comma-separated.
#[derive(Debug)]
pub struct Delivery {
    budget: usize,
    documents: Vec<u8>,
    count: usize,
}

impl Delivery {
    /// `budget` is the most bytes the final message's data may take.
    pub fn new(budget: usize) -> Self {
        Delivery {
            budget,
            documents: Vec::new(),
            count: 0,
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn bytes(&self) -> usize {
        self.documents.len()
    }

    pub fn try_add(&mut self, document: &Document<'_>) -> Fit {
        let serialized = serde_json::to_vec(document).expect("a document serializes");
        if serialized.len() + WRAPPER_RESERVE > self.budget {
            return Fit::TooLarge(serialized.len());
        }
        let separator = usize::from(self.count > 0);
        if self.documents.len() + separator + serialized.len() + WRAPPER_RESERVE > self.budget {
            return Fit::Full;
        }
        if separator == 1 {
            self.documents.push(b',');
        }
        self.documents.extend_from_slice(&serialized);
        self.count += 1;
        Fit::Added
    }

    /// The `data` of the final `completed` stream message, built in place around the
    /// documents (no second copy of a large result).
    pub fn into_final_message(self, total: usize, completed: usize) -> Vec<u8> {
        let head = format!(
            r#"{{"result":{{"status":"completed","total":{total},"completed":{completed},"web_info_list":["#
        );
        let mut message = self.documents;
        message.reserve_exact(head.len() + 3);
        message.splice(0..0, head.into_bytes());
        message.extend_from_slice(b"]}}");
        message
    }
}

/// The `data` of a progress message: counts only, an empty list (Dify drops it anyway).
pub fn progress_message(total: usize, completed: usize) -> serde_json::Value {
    serde_json::json!({"result": {"status": "processing", "web_info_list": [], "total": total, "completed": completed}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_final_message_is_valid_json_within_budget(
            contents in prop::collection::vec("\\PC{0,300}", 0..40),
            budget in 200usize..6000,
        ) {
            let mut delivery = Delivery::new(budget);
            let mut added = Vec::new();
            for (i, content) in contents.iter().enumerate() {
                let url = format!("git:h:{i}");
                let doc = Document { source_url: &url, content, title: &url, description: "d" };
                match delivery.try_add(&doc) {
                    Fit::Added => added.push(content.clone()),
                    Fit::Full => break,
                    Fit::TooLarge(_) => {}
                }
            }
            let message = delivery.into_final_message(contents.len(), added.len());
            prop_assert!(message.len() <= budget);
            let parsed: serde_json::Value = serde_json::from_slice(&message).unwrap();
            let list = parsed["result"]["web_info_list"].as_array().unwrap();
            prop_assert_eq!(list.len(), added.len());
            for (item, content) in list.iter().zip(&added) {
                prop_assert_eq!(item["content"].as_str().unwrap(), content.as_str());
            }
        }
    }
}
