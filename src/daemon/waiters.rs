//! Operators waiting for the restarts they asked for (`protector restart`), by slot: each
//! hears once how the restart ended.

use std::collections::HashMap;
use std::sync::mpsc;

use crate::control::{Reply, TargetResult};

#[derive(Default)]
pub(super) struct Waiters(HashMap<u64, Vec<mpsc::Sender<Reply>>>);

impl Waiters {
    /// `reply` waits for the restart of slot `id`.
    pub fn add(&mut self, id: u64, reply: &mpsc::Sender<Reply>) {
        self.0.entry(id).or_default().push(reply.clone());
    }

    /// Does someone wait for the restart of slot `id` (an operator asked for it)?
    pub fn asked(&self, id: u64) -> bool {
        self.0.contains_key(&id)
    }

    /// Tells those waiting for the restart of slot `id` (target `name`) how it ended: done,
    /// or why it did not end well; they wait no more.
    pub fn answer(&mut self, id: u64, name: &str, outcome: Result<(), String>) {
        let Some(waiters) = self.0.remove(&id) else {
            return;
        };
        let result = TargetResult {
            name: name.to_string(),
            ok: outcome.is_ok(),
            message: outcome.err().unwrap_or_else(|| "restarted".into()),
        };
        for waiter in waiters {
            let _ = waiter.send(Reply::Target(result.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(rx: &mpsc::Receiver<Reply>) -> Vec<(bool, String)> {
        rx.try_iter()
            .map(|r| match r {
                Reply::Target(t) => (t.ok, t.message),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn each_waiter_hears_once_how_its_restart_ended() {
        let mut w = Waiters::default();
        let (a, a_rx) = mpsc::channel();
        let (b, b_rx) = mpsc::channel();
        w.add(1, &a);
        w.add(1, &b);
        w.add(2, &a);
        assert!(w.asked(1) && w.asked(2) && !w.asked(3));
        w.answer(1, "svc", Ok(()));
        assert!(!w.asked(1));
        w.answer(1, "svc", Err("again".into()));
        w.answer(2, "db", Err("restart failed".into()));
        w.answer(3, "none", Ok(()));
        assert_eq!(
            heard(&a_rx),
            [(true, "restarted".into()), (false, "restart failed".into())]
        );
        assert_eq!(heard(&b_rx), [(true, "restarted".into())]);
    }
}
