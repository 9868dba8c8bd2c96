//! Queue and schedule writes that ride the committer's next transaction,
//! after the batch's commits: leasing deliveries, firing schedule ticks,
//! replays, garbage collection. A caller waits for its answer, which comes
//! once the transaction is settled.

use sqlx::Connection;
use tokio::sync::oneshot;

use super::tx::{Tx, TxError};
use super::{CommitError, Context, Effects};
use crate::store::queue::{self, Claim, DeadLetterFilter, Lease, ScheduleRow, Tick};
use crate::store::{Backend, Store, now_ms};

/// A reply to whoever waits for an operation.
pub(super) type OpReply<T> = oneshot::Sender<Result<T, CommitError>>;

/// Queue and schedule writes, run in the batch's transaction after its commits.
pub(in crate::store) enum Op {
    Claim(Claim, OpReply<Vec<(String, Lease, u32)>>),
    Tick(Tick, OpReply<bool>),
    Register(Vec<ScheduleRow>, OpReply<Vec<i64>>),
    Replay(DeadLetterFilter, OpReply<u64>),
    Collect(OpReply<u64>),
    ReleaseLeases(OpReply<u64>),
    Release(Vec<Lease>, OpReply<u64>),
}

/// Sends an operation's result once its transaction is settled.
pub(super) type Settle = Box<dyn FnOnce(Option<&CommitError>) + Send>;

fn settle<T: Send + 'static>(reply: OpReply<T>, value: T) -> Settle {
    Box::new(move |failed| {
        let _ = reply.send(match failed {
            None => Ok(value),
            Some(e) => Err(e.clone()),
        });
    })
}

impl Op {
    /// Answers the waiter with `error` without running.
    pub(super) fn fail(self, error: &CommitError) {
        let e = error.clone();
        match self {
            Op::Claim(_, r) => drop(r.send(Err(e))),
            Op::Tick(_, r) => drop(r.send(Err(e))),
            Op::Register(_, r) => drop(r.send(Err(e))),
            Op::Replay(_, r) | Op::Collect(r) | Op::ReleaseLeases(r) | Op::Release(_, r) => {
                drop(r.send(Err(e)));
            }
        }
    }

    /// Runs in the batch's transaction; the result reaches the waiter once
    /// the transaction is settled.
    pub(super) async fn apply<T: Tx>(
        self,
        tx: &mut T,
        ctx: &Context,
        effects: &mut Effects,
        now: i64,
    ) -> Result<Settle, TxError> {
        match self {
            Op::Claim(claim, reply) => finish(reply, tx.claim(&claim, now).await),
            Op::Tick(tick, reply) => {
                let subscriptions = &*ctx.subscriptions;
                let moved = tx
                    .tick(&tick, subscriptions, &mut effects.deltas, now)
                    .await;
                finish(reply, moved)
            }
            Op::Register(rows, reply) => finish(reply, tx.register_schedules(&rows).await),
            Op::Replay(filter, reply) => {
                let replayed = tx.replay(&filter, now).await;
                if matches!(replayed, Ok(n) if n > 0) {
                    effects.recount = true;
                }
                finish(reply, replayed)
            }
            Op::Collect(reply) => finish(reply, tx.collect_garbage(ctx.window_ms, now).await),
            Op::ReleaseLeases(reply) => finish(reply, tx.release_leases().await),
            Op::Release(leases, reply) => finish(reply, tx.release(&leases).await),
        }
    }
}

/// Hands a result over for settling, or answers an error at once (the
/// whole batch then rolls back).
fn finish<T: Send + 'static>(
    reply: OpReply<T>,
    result: Result<T, TxError>,
) -> Result<Settle, TxError> {
    match result {
        Ok(value) => Ok(settle(reply, value)),
        Err(e) => {
            let _ = reply.send(Err(CommitError::Database(e.to_string())));
            Err(e)
        }
    }
}

impl Store {
    /// Leases those of `claim.ids` still free: (delivery id, lease, attempt).
    ///
    /// On SQLite the claim rides the committer's next transaction. On
    /// PostgreSQL it is a transaction of its own, outside the write lock, so
    /// nodes claim side by side; `FOR UPDATE SKIP LOCKED` keeps any two
    /// from leasing the same delivery.
    pub async fn claim(&self, claim: Claim) -> Result<Vec<(String, Lease, u32)>, CommitError> {
        match self.backend {
            Backend::Sqlite => self.committer.op(|r| Op::Claim(claim, r)).await,
            Backend::Postgres => {
                let database = |e: sqlx::Error| CommitError::Database(e.to_string());
                let mut conn = self.writes.acquire().await.map_err(database)?;
                let mut tx = conn.begin().await.map_err(database)?;
                let won = queue::claim(&mut tx, &claim, now_ms())
                    .await
                    .map_err(database)?;
                tx.commit().await.map_err(database)?;
                Ok(won)
            }
        }
    }

    /// Fires or skips a schedule tick; false if another runner already did.
    pub async fn tick(&self, tick: Tick) -> Result<bool, CommitError> {
        self.committer.op(|r| Op::Tick(tick, r)).await
    }

    /// Records the schedules of the loaded manifests; returns their next ticks.
    pub async fn register_schedules(
        &self,
        rows: Vec<ScheduleRow>,
    ) -> Result<Vec<i64>, CommitError> {
        self.committer.op(|r| Op::Register(rows, r)).await
    }

    /// Moves matching dead letters back to the queue; returns how many.
    pub async fn replay_dead_letters(&self, filter: DeadLetterFilter) -> Result<u64, CommitError> {
        self.committer.op(|r| Op::Replay(filter, r)).await
    }

    /// Forgets expired idempotency keys and delivered messages; returns how many messages went.
    pub async fn collect_garbage(&self) -> Result<u64, CommitError> {
        self.committer.op(Op::Collect).await
    }

    /// Gives back the leases of deliveries that never started.
    pub async fn release(&self, leases: Vec<Lease>) -> Result<u64, CommitError> {
        self.committer.op(|r| Op::Release(leases, r)).await
    }

    /// Frees every lease. Only for a host that owns the database alone, at start-up.
    pub async fn release_leases(&self) -> Result<u64, CommitError> {
        self.committer.op(Op::ReleaseLeases).await
    }
}
