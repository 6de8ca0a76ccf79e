//! `lain exec -t` on Docker: an exec with Docker's own pseudo-terminal (`Tty: true`), attached
//! to its input and output, resized through Docker's exec resize call.
//!
//! Docker cannot stop an exec: when the client leaves or the timeout passes, the kernel closes
//! the exec's input (a shell reading its terminal ends on that) and detaches; a command that
//! ignores its input is left to end by itself.

use super::failed;
use crate::runtime::tty::{TtyCommand, TtyInput, TtySize};
use crate::runtime::{ExecOutput, RuntimeError};
use bollard::Docker;
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

const WHAT: &str = "exec in";

/// Why the kernel lets go of a command before its output ended.
enum LetGo {
    Timeout,
    ClientLeft,
}

async fn resize(docker: &Docker, exec: &str, size: TtySize) -> Result<(), bollard::errors::Error> {
    let options = bollard::query_parameters::ResizeExecOptions {
        h: i32::from(size.rows),
        w: i32::from(size.cols),
    };
    docker.resize_exec(exec, options).await
}

/// Runs `command` in container `name` on a terminal (see [`crate::runtime::Runtime::exec_tty`]).
pub(super) async fn exec_tty(
    docker: &Docker,
    name: &str,
    command: &TtyCommand,
    mut input: mpsc::Receiver<TtyInput>,
    out: mpsc::Sender<Vec<u8>>,
) -> Result<ExecOutput, RuntimeError> {
    let size = command.size;
    let config = bollard::models::ExecConfig {
        cmd: Some(command.argv.clone()),
        env: Some(vec![format!("TERM={}", command.term)]),
        tty: Some(true),
        console_size: Some(vec![usize::from(size.rows), usize::from(size.cols)]),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker
        .create_exec(name, config)
        .await
        .map_err(failed(WHAT, name))?;
    let options = bollard::exec::StartExecOptions {
        detach: false,
        tty: true,
        output_capacity: None,
    };
    let started = docker
        .start_exec(&exec.id, Some(options))
        .await
        .map_err(failed(WHAT, name))?;
    let bollard::exec::StartExecResults::Attached {
        mut output,
        input: mut stdin,
    } = started
    else {
        return Err(RuntimeError::Failed(format!(
            "{WHAT} {name}: Docker did not attach to the command's terminal"
        )));
    };
    // Engines older than API 1.42 ignore the initial size.
    let _ = resize(docker, &exec.id, size).await;
    let (docker_typist, id) = (docker.clone(), exec.id.clone());
    let mut typist = tokio::spawn(async move {
        while let Some(typed) = input.recv().await {
            match typed {
                TtyInput::Data(bytes) => {
                    if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                        return false;
                    }
                }
                TtyInput::Resize(size) => {
                    let _ = resize(&docker_typist, &id, size).await;
                }
            }
        }
        // The client left: closing the input hangs up a shell reading it.
        let _ = stdin.shutdown().await;
        true
    });
    let deadline = tokio::time::sleep(command.timeout);
    tokio::pin!(deadline);
    let mut typing = true;
    // Some when the kernel lets go of the command before its output ended.
    let let_go = loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(
                    bollard::container::LogOutput::Console { message }
                    | bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::StdErr { message },
                )) => {
                    if out.send(message.to_vec()).await.is_err() {
                        break Some(LetGo::ClientLeft);
                    }
                }
                Some(Ok(bollard::container::LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    typist.abort();
                    return Err(failed(WHAT, name)(e));
                }
                None => break None,
            },
            left = &mut typist, if typing => {
                typing = false;
                if matches!(left, Ok(true)) {
                    break Some(LetGo::ClientLeft);
                }
            }
            () = &mut deadline => break Some(LetGo::Timeout),
        }
    };
    typist.abort();
    match let_go {
        Some(LetGo::Timeout) => {
            return Ok(ExecOutput {
                code: None,
                timed_out: true,
                output: Vec::new(),
            });
        }
        Some(LetGo::ClientLeft) => {
            return Err(RuntimeError::Failed(format!(
                "{WHAT} {name}: the client left (the command's input is closed)"
            )));
        }
        None => {}
    }
    Ok(ExecOutput {
        code: super::exec_status(docker, &exec.id, name).await?,
        timed_out: false,
        output: Vec::new(),
    })
}
