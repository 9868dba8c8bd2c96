//! Queue and schedule writes that ride the committer's next transaction,
//! after the batch's commits: leasing deliveries, firing schedule ticks,
//! replays, garbage collection. A caller waits for its answer, which comes
//! once the transaction is settled.

use std::time::Duration;

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
    Collect(i64, OpReply<u64>),
    ReleaseLeases(OpReply<u64>),
    Release(Vec<Lease>, OpReply<u64>),
}

/// What an operation gave, held until its transaction is settled.
pub(super) enum Answer {
    Claimed(Vec<(String, Lease, u32)>),
    Moved(bool),
    Ticks(Vec<i64>),
    Count(u64),
}

impl Op {
    /// Answers the waiter with `error` without running.
    pub(super) fn fail(self, error: &CommitError) {
        let e = error.clone();
        match self {
            Op::Claim(_, r) => drop(r.send(Err(e))),
            Op::Tick(_, r) => drop(r.send(Err(e))),
            Op::Register(_, r) => drop(r.send(Err(e))),
            Op::Replay(_, r) | Op::Collect(_, r) | Op::ReleaseLeases(r) | Op::Release(_, r) => {
                drop(r.send(Err(e)));
            }
        }
    }

    /// Runs in the batch's transaction. It can run again if the
    /// transaction is retried; [`Op::answer`] sends what it gave once the
    /// transaction is committed.
    pub(super) async fn run<T: Tx>(
        &self,
        tx: &mut T,
        ctx: &Context,
        effects: &mut Effects,
        now: i64,
    ) -> Result<Answer, TxError> {
        Ok(match self {
            Op::Claim(claim, _) => Answer::Claimed(tx.claim(claim, now).await?),
            Op::Tick(tick, _) => {
                let subscriptions = &*ctx.subscriptions;
                let deltas = &mut effects.deltas;
                Answer::Moved(tx.tick(tick, subscriptions, deltas, now).await?)
            }
            Op::Register(rows, _) => Answer::Ticks(tx.register_schedules(rows).await?),
            Op::Replay(filter, _) => {
                let replayed = tx.replay(filter, now).await?;
                if replayed > 0 {
                    effects.recount = true;
                }
                Answer::Count(replayed)
            }
            Op::Collect(answers_window_ms, _) => {
                let freed = tx
                    .forget_answers(now.saturating_sub(*answers_window_ms))
                    .await?;
                tx.add_usage(&freed, ctx.usage_shard).await?;
                Answer::Count(tx.collect_garbage(ctx.window_ms, now).await?)
            }
            Op::ReleaseLeases(_) => Answer::Count(tx.release_leases().await?),
            Op::Release(leases, _) => Answer::Count(tx.release(leases).await?),
        })
    }

    /// Sends the waiter what [`Op::run`] gave, its transaction committed.
    pub(super) fn answer(self, answer: Answer) {
        match (self, answer) {
            (Op::Claim(_, r), Answer::Claimed(won)) => drop(r.send(Ok(won))),
            (Op::Tick(_, r), Answer::Moved(moved)) => drop(r.send(Ok(moved))),
            (Op::Register(_, r), Answer::Ticks(ticks)) => drop(r.send(Ok(ticks))),
            (
                Op::Replay(_, r) | Op::Collect(_, r) | Op::ReleaseLeases(r) | Op::Release(_, r),
                Answer::Count(n),
            ) => drop(r.send(Ok(n))),
            // `run` gives each operation its own kind of answer.
            (op, _) => op.fail(&CommitError::Database("mismatched answer".into())),
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

    /// Forgets expired idempotency keys, delivered messages and the
    /// answers to `Idempotency-Key` requests older than `answers_window`;
    /// returns how many messages went.
    pub async fn collect_garbage(&self, answers_window: Duration) -> Result<u64, CommitError> {
        let window_ms = i64::try_from(answers_window.as_millis()).unwrap_or(i64::MAX);
        self.committer.op(|r| Op::Collect(window_ms, r)).await
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
