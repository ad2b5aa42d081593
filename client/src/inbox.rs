//! Calls waiting for their replies, by correlation id, and the thread that
//! reads the reply topics and hands each reply to its call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use onex_vault_models::ReplyEnvelope;
use rdkafka::consumer::BaseConsumer;
use rdkafka::Message;
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Default)]
pub struct Inbox {
    waiting: Mutex<HashMap<Uuid, oneshot::Sender<ReplyEnvelope>>>,
}

impl Inbox {
    /// Registers a call for the reply to `correlation_id`.
    pub fn expect(&self, correlation_id: Uuid) -> oneshot::Receiver<ReplyEnvelope> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(correlation_id, tx);
        rx
    }

    /// The call gave up: a later reply is dropped.
    pub fn forget(&self, correlation_id: Uuid) {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&correlation_id);
    }

    /// Hands `reply` to its call; a reply nobody waits for is dropped.
    fn deliver(&self, reply: ReplyEnvelope) {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&reply.correlation_id);
        if let Some(call) = waiting {
            let _ = call.send(reply);
        }
    }
}

/// Polls the reply consumer until `stop`, delivering every reply it can read.
pub fn listen(consumer: &BaseConsumer, inbox: &Inbox, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(record)) = consumer.poll(Duration::from_millis(100)) else { continue };
        if let Some(Ok(reply)) = record.payload().map(serde_json::from_slice::<ReplyEnvelope>) {
            inbox.deliver(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use onex_vault_models::{Envelope, ErrorCode, ReplyError, VaultReply};

    use super::*;

    fn reply(correlation_id: Uuid) -> ReplyEnvelope {
        let failure = VaultReply::failure("get_secret", ReplyError::new(ErrorCode::ResourceNotFound, "x"), 1.0);
        Envelope::new(correlation_id, "ModelVaultAdapterResponse", failure)
    }

    #[test]
    fn a_reply_reaches_its_call_once_and_duplicates_or_strays_are_dropped() {
        let inbox = Inbox::default();
        let id = Uuid::new_v4();
        let mut waiting = inbox.expect(id);
        inbox.deliver(reply(Uuid::new_v4()));
        assert!(waiting.try_recv().is_err(), "a reply to someone else");
        inbox.deliver(reply(id));
        inbox.deliver(reply(id));
        assert_eq!(waiting.try_recv().map(|r| r.correlation_id).ok(), Some(id));
        assert!(inbox.waiting.lock().map(|w| w.is_empty()).unwrap_or(false), "the duplicate found nobody");

        let gave_up = Uuid::new_v4();
        let _late = inbox.expect(gave_up);
        inbox.forget(gave_up);
        inbox.deliver(reply(gave_up));
        assert!(inbox.waiting.lock().map(|w| w.is_empty()).unwrap_or(false));
    }
}
