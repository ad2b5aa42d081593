//! Calls waiting for their replies, and the thread that reads the reply
//! topics and hands each reply to its call. A reply is a call's when it
//! carries the call's `correlation_id` and names the envelope the call sent
//! as its `parent_envelope_id`: a reply to an earlier attempt, or one forged
//! under the same correlation id without knowing the request, is dropped.
//! With a [`Trust`] (the node's strict profile) a reply must also be a
//! `ModelMessageEnvelope` signed by the node's runtime key: anything else on
//! the reply topics is dropped, whoever wrote it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use onex_vault_models::{ReplyEnvelope, SignedEnvelope};
use rdkafka::consumer::BaseConsumer;
use rdkafka::Message;
use tokio::sync::oneshot;
use uuid::Uuid;

/// A call waiting: the envelope it sent, and where its reply goes.
type Waiting = (Uuid, oneshot::Sender<ReplyEnvelope>);

/// Whose signature replies must carry.
pub struct Trust {
    pub realm: String,
    pub node: crate::NodeTrust,
}

#[derive(Default)]
pub struct Inbox {
    waiting: Mutex<HashMap<Uuid, Waiting>>,
    trust: Option<Trust>,
}

impl Inbox {
    pub fn new(trust: Option<Trust>) -> Inbox {
        Inbox { waiting: Mutex::default(), trust }
    }

    /// The reply in a record's value, if it is one this client may believe:
    /// signed by the node when the client trusts only the node (a signed
    /// reply is unwrapped unchecked otherwise: the dev profile).
    fn read(&self, record: &[u8]) -> Option<ReplyEnvelope> {
        let value: serde_json::Value = serde_json::from_slice(record).ok()?;
        let envelope = match (&self.trust, SignedEnvelope::looks_signed(&value)) {
            (Some(trust), true) => {
                let keys_of = |signer: &str| {
                    if signer == trust.node.runtime_id {
                        vec![trust.node.key.clone()]
                    } else {
                        Vec::new()
                    }
                };
                let text = std::str::from_utf8(record).ok()?;
                SignedEnvelope::parse_verified(text, &trust.realm, keys_of).ok()?.payload
            }
            (Some(_), false) => return None,
            (None, true) => serde_json::from_value::<SignedEnvelope>(value).ok()?.payload,
            (None, false) => value,
        };
        serde_json::from_value(envelope).ok()
    }

    /// Registers a call for the reply to the envelope `envelope_id` sent
    /// with `correlation_id`.
    pub fn expect(&self, correlation_id: Uuid, envelope_id: Uuid) -> oneshot::Receiver<ReplyEnvelope> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(correlation_id, (envelope_id, tx));
        rx
    }

    /// The call gave up: a later reply is dropped.
    pub fn forget(&self, correlation_id: Uuid) {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&correlation_id);
    }

    /// Hands `reply` to its call; a reply nobody waits for is dropped.
    fn deliver(&self, reply: ReplyEnvelope) {
        let Some(correlation_id) = reply.correlation_id else { return };
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let answers = |(sent, _): &Waiting| reply.parent_envelope_id == Some(*sent);
        if waiting.get(&correlation_id).is_some_and(answers) {
            if let Some((_, call)) = waiting.remove(&correlation_id) {
                let _ = call.send(reply);
            }
        }
    }
}

/// Polls the reply consumer until `stop`, delivering every reply it can read.
pub fn listen(consumer: &BaseConsumer, inbox: &Inbox, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(record)) = consumer.poll(Duration::from_millis(100)) else { continue };
        if let Some(reply) = record.payload().and_then(|value| inbox.read(value)) {
            inbox.deliver(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use onex_vault_models::{Envelope, ErrorCode, ReplyError, VaultReply};

    use super::*;

    fn reply(correlation_id: Uuid, parent: Uuid) -> ReplyEnvelope {
        let failure = VaultReply::failure("get_secret", ReplyError::new(ErrorCode::ResourceNotFound, "x"), 1.0);
        let mut reply = Envelope::new("ModelVaultAdapterResponse", failure);
        reply.correlation_id = Some(correlation_id);
        reply.parent_envelope_id = Some(parent);
        reply
    }

    #[test]
    fn a_reply_reaches_its_call_once_and_duplicates_or_strays_are_dropped() {
        let inbox = Inbox::default();
        let (id, sent) = (Uuid::new_v4(), Uuid::new_v4());
        let mut waiting = inbox.expect(id, sent);
        inbox.deliver(reply(Uuid::new_v4(), sent));
        assert!(waiting.try_recv().is_err(), "a reply to someone else");
        inbox.deliver(reply(id, Uuid::new_v4()));
        assert!(waiting.try_recv().is_err(), "same correlation id, another envelope: an earlier attempt or a forgery");
        inbox.deliver(reply(id, sent));
        inbox.deliver(reply(id, sent));
        assert_eq!(waiting.try_recv().map(|r| r.correlation_id).ok(), Some(Some(id)));
        assert!(inbox.waiting.lock().map(|w| w.is_empty()).unwrap_or(false), "the duplicate found nobody");

        let gave_up = Uuid::new_v4();
        let _late = inbox.expect(gave_up, sent);
        inbox.forget(gave_up);
        inbox.deliver(reply(gave_up, sent));
        assert!(inbox.waiting.lock().map(|w| w.is_empty()).unwrap_or(false));
    }
}
