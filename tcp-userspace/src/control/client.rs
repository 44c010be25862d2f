//! The CLI's side of the control socket.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::proto::{Request, Response};
use crate::instance::Paths;

/// Asks the daemon on `paths.iface`. `Ok(None)` when no daemon listens (never started,
/// stopped, or crashed); errors are for a daemon that is there but fails.
pub fn ask(paths: &Paths, req: &Request) -> anyhow::Result<Option<Response>> {
    let mut stream = match UnixStream::connect(&paths.socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("connecting to {}", paths.socket.display()));
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .with_context(|| format!("writing to {}", paths.socket.display()))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .with_context(|| format!("reading from {}", paths.socket.display()))?;
    let response: Response = serde_json::from_str(answer.trim())
        .with_context(|| format!("a garbled answer from {}", paths.socket.display()))?;
    if let Response::Error { message } = response {
        bail!("tcpfront on {}: {message}", paths.iface);
    }
    Ok(Some(response))
}
