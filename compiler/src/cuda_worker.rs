//! A CUDA model on a thread of its own. The CUDA driver handles of
//! [`mnc_runtime::cuda::CudaModel`] (context, stream, captured graph) are not meant to cross
//! threads, and a run needs `&mut` access; the worker keeps the model on one thread for its
//! whole life and serves runs sent to it over a channel, so the handle callers hold is
//! `Send + Sync` and runs take `&self` (concurrent callers are served one after another).

use anyhow::{anyhow, Context, Result};
use mnc_ir::{Graph, Tensor};
use mnc_runtime::cuda::{CudaArch, CudaModel, CudaOptions};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

type Reply = mpsc::Sender<Result<Vec<Tensor>>>;
type Job = (Arc<[Tensor]>, Reply);

/// A handle to a [`CudaModel`] living on its worker thread.
pub struct CudaWorker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    describe: String,
}

impl CudaWorker {
    /// Starts the worker thread and compiles `graph` for `arch` on it (PTX generation and
    /// module load); returns once the model is loaded, or with the compile error.
    pub fn compile(graph: Graph, arch: CudaArch, opts: CudaOptions) -> Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
        let thread = std::thread::Builder::new()
            .name("mnc-cuda".into())
            .spawn(move || {
                let mut model = match CudaModel::compile(&graph, arch, &opts) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!(e)));
                        return;
                    }
                };
                drop(graph);
                let describe = format!(
                    "{}{}",
                    model.device_name(),
                    if model.uses_cuda_graph() {
                        ", CUDA graph"
                    } else {
                        ""
                    }
                );
                if ready_tx.send(Ok(describe)).is_err() {
                    return;
                }
                // Serve runs until every sender is dropped.
                while let Ok((inputs, reply)) = rx.recv() {
                    let _ = reply.send(model.run(&inputs).map_err(|e| anyhow!(e)));
                }
            })
            .context("starting the CUDA worker thread")?;
        let describe = match ready_rx.recv() {
            Ok(r) => r,
            Err(_) => Err(anyhow!("the CUDA worker thread ended while compiling")),
        };
        let describe = match describe {
            Ok(d) => d,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok(CudaWorker {
            jobs: Some(jobs),
            thread: Some(thread),
            describe,
        })
    }

    /// Runs the model on the worker thread and waits for the outputs.
    pub fn run(&self, inputs: Arc<[Tensor]>) -> Result<Vec<Tensor>> {
        let (tx, rx) = mpsc::channel();
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| anyhow!("the CUDA worker is shut down"))?;
        jobs.send((inputs, tx))
            .map_err(|_| anyhow!("the CUDA worker thread has ended"))?;
        rx.recv()
            .map_err(|_| anyhow!("the CUDA worker thread ended during a run"))?
    }

    /// The device name (and whether runs replay a captured CUDA graph).
    pub fn describe(&self) -> &str {
        &self.describe
    }
}

impl Drop for CudaWorker {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop; the model is dropped on its own thread.
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
