//! The writer stage: rows → Parquet data files, on as many cores as the input needs.
//!
//! Each flush is written by up to [`WriterOptions::writers`] writers, each on a task of its own
//! with its own data files. A batch goes to the first writer that has room (one batch encoding and
//! at most one waiting), so a pipeline that keeps up writes one file per partition value per
//! commit, the same layout as a single writer. Only while rows arrive faster than one writer
//! encodes them (catching up on a topic, a backfill) do the others take batches, and encoding
//! then runs on several cores at one file per writer and partition value. Row order across
//! files carries no meaning in an Iceberg table; each flush's files are committed together.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use futures::FutureExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use kappa_iceberg::IcebergError;
use kappa_iceberg::writer::{StreamingWriter, WriterOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::buffer::Buffer;
use crate::error::RuntimeError;

/// Batches queued between the read loop and the writer stage (backpressure on reading).
pub(crate) const WRITER_QUEUE: usize = 4;

/// Batches one writer holds at most: one encoding, one waiting.
const IN_HAND: usize = 2;

/// What the read loop hands the writer stage.
pub(crate) enum ToWriter {
    /// Rows for the main table, in its Arrow schema.
    Rows(RecordBatch),
    /// Everything since the last flush is in: close the files and commit them with this buffer.
    Flush(Box<Buffer>),
}

/// A flush ready to commit: its bookkeeping and the data files holding its rows.
pub(crate) type Flushed = (Box<Buffer>, Vec<DataFile>);

/// Encodes rows into data files as they arrive; at each flush closes the files and passes them
/// on with the flush's bookkeeping. Files are named `<run uuid>-<flush>-<writer>-<n>.parquet`.
pub(crate) async fn write_loop(
    mut rx: mpsc::Receiver<ToWriter>,
    to_commit: mpsc::Sender<Flushed>,
    table: Table,
    table_name: String,
    options: WriterOptions,
) -> Result<(), RuntimeError> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let context = Arc::new(Context {
        table,
        table_name,
        options,
    });
    let mut writers: Vec<Writer> = (0..context.options.writers.max(1))
        .map(|index| Writer::spawn(context.clone(), format!("{run}-{{flush}}-{index}")))
        .collect();
    let mut flushes = 0u64;
    while let Some(message) = rx.recv().await {
        match message {
            ToWriter::Rows(rows) => {
                let (index, permit) = room(&writers).await?;
                let job = Job::Rows {
                    rows,
                    flushes,
                    permit,
                };
                writers[index].send(job).await?;
            }
            ToWriter::Flush(buffer) => {
                flushes += 1;
                let closing_since = Instant::now();
                // Every writer closes its files at once, each on its own task.
                let mut closing = Vec::with_capacity(writers.len());
                for writer in &mut writers {
                    closing.push(writer.finish().await?);
                }
                let mut files = Vec::new();
                for (writer, closed) in writers.iter_mut().zip(closing) {
                    files.extend(writer.finished(closed).await?);
                }
                debug!(
                    files = files.len(),
                    ms = closing_since.elapsed().as_millis() as u64,
                    "closed the flush's data files"
                );
                if to_commit.send((buffer, files)).await.is_err() {
                    break;
                }
            }
        }
    }
    // Dropping the queues ends the writers; files of an unfinished flush are never committed.
    for writer in writers {
        writer.end().await?;
    }
    Ok(())
}

/// The first writer with room for a batch, else the first to make room.
async fn room(writers: &[Writer]) -> Result<(usize, OwnedSemaphorePermit), RuntimeError> {
    for (index, writer) in writers.iter().enumerate() {
        if let Ok(permit) = writer.room.clone().try_acquire_owned() {
            return Ok((index, permit));
        }
    }
    let waits = writers
        .iter()
        .map(|writer| writer.room.clone().acquire_owned().boxed());
    match futures::future::select_all(waits).await {
        (Ok(permit), index, _) => Ok((index, permit)),
        // Nothing closes the semaphores.
        (Err(_), index, _) => Err(RuntimeError::Invariant(format!(
            "the room of Parquet writer {index} was closed"
        ))),
    }
}

/// What every writer shares.
struct Context {
    table: Table,
    table_name: String,
    options: WriterOptions,
}

impl Context {
    fn fail(&self, source: iceberg::Error) -> RuntimeError {
        RuntimeError::Sink(IcebergError::Write {
            table: self.table_name.clone(),
            source: Box::new(source),
        })
    }
}

enum Job {
    /// Encode these rows of flush `flushes`; the permit is the writer's room they take.
    Rows {
        rows: RecordBatch,
        flushes: u64,
        permit: OwnedSemaphorePermit,
    },
    /// Close the open files and return them.
    Finish(oneshot::Sender<Vec<DataFile>>),
}

/// One writer task: its queue, its room, and its end.
struct Writer {
    tx: mpsc::Sender<Job>,
    room: Arc<Semaphore>,
    handle: Option<JoinHandle<Result<(), RuntimeError>>>,
}

impl Writer {
    /// A writer task naming its files `prefix` with `{flush}` replaced by the flush number.
    fn spawn(context: Arc<Context>, prefix: String) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(IN_HAND);
        let handle = tokio::spawn(async move {
            let mut open: Option<StreamingWriter> = None;
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Rows {
                        rows,
                        flushes,
                        permit,
                    } => {
                        let writer = match open.as_mut() {
                            Some(writer) => writer,
                            None => open.insert(
                                StreamingWriter::new(
                                    &context.table,
                                    &prefix.replace("{flush}", &format!("{flushes:05}")),
                                    &context.options,
                                )
                                .await
                                .map_err(|e| context.fail(e))?,
                            ),
                        };
                        writer.write(&rows).await.map_err(|e| context.fail(e))?;
                        drop(permit);
                        kappa_core::crash_point("runtime::write");
                    }
                    Job::Finish(reply) => {
                        let files = match open.take() {
                            Some(writer) => writer.finish().await.map_err(|e| context.fail(e))?,
                            None => Vec::new(),
                        };
                        let _ = reply.send(files);
                    }
                }
            }
            Ok(())
        });
        Self {
            tx,
            room: Arc::new(Semaphore::new(IN_HAND)),
            handle: Some(handle),
        }
    }

    async fn send(&mut self, job: Job) -> Result<(), RuntimeError> {
        if self.tx.send(job).await.is_err() {
            return Err(self.failure().await);
        }
        Ok(())
    }

    /// Asks this writer to close its files of the current flush; [`Writer::finished`] waits.
    async fn finish(&mut self) -> Result<oneshot::Receiver<Vec<DataFile>>, RuntimeError> {
        let (reply, files) = oneshot::channel();
        self.send(Job::Finish(reply)).await?;
        Ok(files)
    }

    /// The files this writer closed for [`Writer::finish`].
    async fn finished(
        &mut self,
        files: oneshot::Receiver<Vec<DataFile>>,
    ) -> Result<Vec<DataFile>, RuntimeError> {
        match files.await {
            Ok(files) => Ok(files),
            Err(_) => Err(self.failure().await),
        }
    }

    /// Ends the task and returns its result.
    async fn end(mut self) -> Result<(), RuntimeError> {
        drop(self.tx);
        join(self.handle.take()).await
    }

    /// Why the task ended early (its queue closed): its error.
    async fn failure(&mut self) -> RuntimeError {
        join(self.handle.take()).await.err().unwrap_or_else(|| {
            RuntimeError::Invariant("a Parquet writer task ended before its flush".into())
        })
    }
}

/// A writer task's result (none if already joined); a panic in it is a bug, reported as such.
async fn join(handle: Option<JoinHandle<Result<(), RuntimeError>>>) -> Result<(), RuntimeError> {
    let Some(handle) = handle else {
        return Ok(());
    };
    handle.await.unwrap_or_else(|e| {
        Err(RuntimeError::Invariant(format!(
            "a Parquet writer task: {e}"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers whose rooms are real and whose tasks are absent: `room` only looks at the rooms.
    fn writers(n: usize) -> Vec<Writer> {
        (0..n)
            .map(|_| Writer {
                tx: mpsc::channel(IN_HAND).0,
                room: Arc::new(Semaphore::new(IN_HAND)),
                handle: None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_goes_to_the_first_writer_with_room() {
        let writers = writers(2);
        let (first, encoding) = room(&writers).await.unwrap();
        let (again, waiting) = room(&writers).await.unwrap();
        assert_eq!((first, again), (0, 0), "one batch encoding and one waiting");
        let (second, _other) = room(&writers).await.unwrap();
        assert_eq!(second, 1, "the second writer only once the first is full");
        drop(encoding);
        let (back, _) = room(&writers).await.unwrap();
        assert_eq!(back, 0, "the first again as soon as it has room");
        drop(waiting);
    }

    #[tokio::test]
    async fn with_every_writer_full_the_first_to_make_room_gets_the_batch() {
        let writers = writers(2);
        let mut held = Vec::new();
        for _ in 0..2 * IN_HAND {
            held.push(room(&writers).await.unwrap());
        }
        let waiting = room(&writers);
        tokio::pin!(waiting);
        assert!(
            futures::poll!(waiting.as_mut()).is_pending(),
            "no writer has room"
        );
        let freed = held.iter().position(|(index, _)| *index == 1).unwrap();
        drop(held.remove(freed));
        assert_eq!(waiting.await.unwrap().0, 1);
    }
}
