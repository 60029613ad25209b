//! Group commit: many callers' writes filed by one writer task, whatever has queued up in one
//! transaction. On SQLite every statement is a hand-off to the connection's worker thread and
//! there is one writer connection, so a transaction per caller spends most of its time in
//! thread switches; a batch shares its statements (multi-row INSERTs, `IN` reads) and its commit.
//!
//! The writer is spawned on first use and holds only a weak reference to its service, so it ends
//! with it. A batch that fails as a whole is filed again one item at a time, so one bad item
//! never fails the others; an item the batch cannot take now (it touches what an earlier item of
//! the batch touches) is put back for the next batch.

use std::future::Future;
use std::sync::Mutex;

use kernel::{Error, ErrorCode, Result};
use tokio::sync::{mpsc, oneshot};

/// What became of one item of a batch.
pub enum Filed<O> {
    /// Done (or refused on its own, without spoiling the batch).
    Done(Result<O>),
    /// Not in this batch: file it in the next one.
    Again,
}

/// A service that files items in batches.
pub trait GroupWrite: Sized + Send + Sync + 'static {
    type Item: Send + 'static;
    type Out: Send + 'static;
    /// What the writer task holds between batches (a weak reference, so it ends with the service).
    type Weak: Send + Sync + 'static;

    fn downgrade(&self) -> Self::Weak;
    fn upgrade(weak: &Self::Weak) -> Option<Self>;

    /// Files `items` in one transaction and answers one [`Filed`] per item, in order. An `Err`
    /// means nothing was written: the writer files each item alone. Only an item after the
    /// first may be answered [`Filed::Again`].
    fn write<'a>(&'a self, items: &'a [Self::Item]) -> impl Future<Output = Result<Vec<Filed<Self::Out>>>> + Send + 'a;
}

type Job<W> = (<W as GroupWrite>::Item, oneshot::Sender<Result<<W as GroupWrite>::Out>>);

/// The queue of one group writer. Keep it in the service; [`GroupCommit::submit`] spawns the
/// writer when it is not running.
pub struct GroupCommit<W: GroupWrite> {
    max: usize,
    sender: Mutex<Option<mpsc::Sender<Job<W>>>>,
}

fn stopped() -> Error {
    Error::new(ErrorCode::Unavailable, "the writer stopped; try again")
}

impl<W: GroupWrite> GroupCommit<W> {
    /// A queue whose batches hold at most `max` items.
    pub fn new(max: usize) -> Self {
        GroupCommit { max: max.max(1), sender: Mutex::new(None) }
    }

    /// Files `item` with whatever else is waiting and answers when its batch has committed.
    pub async fn submit(&self, service: &W, item: W::Item) -> Result<W::Out> {
        let sender = {
            let mut s = self.sender.lock().expect("group writer lock");
            if s.as_ref().is_none_or(|s| s.is_closed()) {
                *s = Some(spawn::<W>(service.downgrade(), self.max));
            }
            s.as_ref().cloned().expect("group writer")
        };
        let (done, wait) = oneshot::channel();
        sender.send((item, done)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

fn spawn<W: GroupWrite>(weak: W::Weak, max: usize) -> mpsc::Sender<Job<W>> {
    let (tx, mut rx) = mpsc::channel::<Job<W>>(max * 4);
    tokio::spawn(async move {
        let mut carried: Vec<Job<W>> = Vec::new();
        loop {
            let mut jobs = std::mem::take(&mut carried);
            if jobs.is_empty() {
                match rx.recv().await {
                    Some(j) => jobs.push(j),
                    None => break,
                }
            }
            while jobs.len() < max {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let Some(service) = W::upgrade(&weak) else { break };
            let (items, replies): (Vec<W::Item>, Vec<_>) = jobs.into_iter().unzip();
            match service.write(&items).await {
                Ok(filed) if filed.len() == items.len() && !matches!(filed.first(), Some(Filed::Again)) => {
                    for ((item, reply), f) in items.into_iter().zip(replies).zip(filed) {
                        match f {
                            Filed::Done(r) => {
                                let _ = reply.send(r);
                            }
                            Filed::Again => carried.push((item, reply)),
                        }
                    }
                }
                Ok(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(Error::internal("the writer answered a batch wrongly")));
                    }
                }
                Err(e) if items.len() == 1 => {
                    if let Some(r) = replies.into_iter().next() {
                        let _ = r.send(Err(e));
                    }
                }
                Err(_) => {
                    // One of them spoiled the batch: file each alone.
                    for (item, reply) in items.into_iter().zip(replies) {
                        let r = match service.write(std::slice::from_ref(&item)).await {
                            Ok(mut f) if f.len() == 1 => match f.remove(0) {
                                Filed::Done(r) => r,
                                Filed::Again => Err(Error::internal("the writer put back an item filed alone")),
                            },
                            Ok(_) => Err(Error::internal("the writer answered a batch wrongly")),
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(r);
                    }
                }
            }
        }
        for (_, reply) in carried {
            let _ = reply.send(Err(stopped()));
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Weak};

    use super::*;

    /// Adds numbers; refuses negative ones on their own, fails a batch holding 13, and puts
    /// back a repeated number.
    struct Adder(Arc<Mutex<Vec<usize>>>);

    impl GroupWrite for Adder {
        type Item = i64;
        type Out = i64;
        type Weak = Weak<Mutex<Vec<usize>>>;
        fn downgrade(&self) -> Self::Weak {
            Arc::downgrade(&self.0)
        }
        fn upgrade(w: &Self::Weak) -> Option<Self> {
            w.upgrade().map(Adder)
        }
        async fn write(&self, items: &[i64]) -> Result<Vec<Filed<i64>>> {
            tokio::task::yield_now().await;
            if items.contains(&13) && items.len() > 1 {
                return Err(Error::conflict("unlucky batch"));
            }
            if items == [13] {
                return Err(Error::validation("13 is unlucky"));
            }
            self.0.lock().unwrap().push(items.len());
            let mut seen = std::collections::HashSet::new();
            Ok(items
                .iter()
                .map(|i| {
                    if !seen.insert(*i) {
                        Filed::Again
                    } else if *i < 0 {
                        Filed::Done(Err(Error::validation("negative")))
                    } else {
                        Filed::Done(Ok(i * 2))
                    }
                })
                .collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_answer_each_caller_and_a_spoiled_batch_is_filed_one_by_one() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let adder = Arc::new(Adder(sizes.clone()));
        let group = Arc::new(GroupCommit::<Adder>::new(8));
        let mut handles = Vec::new();
        for i in 0..64i64 {
            let (adder, group) = (adder.clone(), group.clone());
            let item = match i {
                10 => -1,
                20 => 13,
                30 | 31 => 7,
                _ => i,
            };
            handles.push(tokio::spawn(async move { (item, group.submit(&adder, item).await) }));
        }
        for h in handles {
            let (item, r) = h.await.unwrap();
            match item {
                -1 => assert_eq!(r.unwrap_err().code, ErrorCode::ValidationFailed),
                13 => assert_eq!(r.unwrap_err().message, "13 is unlucky"),
                i => assert_eq!(r.unwrap(), i * 2),
            }
        }
        let sizes = sizes.lock().unwrap();
        assert!(sizes.iter().all(|s| *s <= 8), "{sizes:?}");
        assert!(sizes.iter().any(|s| *s > 1), "nothing was batched: {sizes:?}");
    }
}
