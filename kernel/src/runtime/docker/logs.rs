//! Copying a Docker container's output into the kernel's log store.

use super::{DockerRuntime, Engine, container};
use crate::runtime::Observed;
use futures::StreamExt;

impl DockerRuntime {
    /// Copies a running container's output into its log file (label [`container::LOG_LABEL`])
    /// from `since` (Unix seconds) until the container stops. Lines written while no kernel ran
    /// are not copied.
    pub(super) fn follow_logs(&self, engine: &Engine, o: &Observed, since: i64) {
        let Some(path) = o
            .labels
            .get(container::LOG_LABEL)
            .map(std::path::PathBuf::from)
        else {
            return;
        };
        if !self.following.lock().insert(o.name.clone()) {
            return;
        }
        let (docker, name, following) = (
            engine.docker.clone(),
            o.name.clone(),
            self.following.clone(),
        );
        tokio::spawn(async move {
            let options = bollard::query_parameters::LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                since: i32::try_from(since).unwrap_or(0),
                ..Default::default()
            };
            let opened = async {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .await
            };
            match opened.await {
                Ok(mut file) => {
                    use tokio::io::AsyncWriteExt;
                    let mut stream = docker.logs(&name, Some(options));
                    while let Some(Ok(chunk)) = stream.next().await {
                        if file.write_all(&chunk.into_bytes()).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => tracing::warn!(instance = %name, "cannot open its log: {e}"),
            }
            following.lock().remove(&name);
        });
    }
}
