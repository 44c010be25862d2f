//! A backend for the pool tests, as a process of its own (so that a test can kill it):
//! `tf-test-backend ADDR NAME [echo|silent]`. `echo` (default) sends `NAME\n` on every
//! connection and then echoes what it receives; `silent` accepts and never sends anything.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
};

fn serve(mut s: TcpStream, name: &str, silent: bool) {
    if silent {
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        return;
    }
    if s.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(name)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: tf-test-backend ADDR NAME [echo|silent]");
        std::process::exit(2);
    };
    let silent = args.get(3).is_some_and(|m| m == "silent");
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tf-test-backend: binding {addr}: {e}");
            std::process::exit(1);
        }
    };
    for s in listener.incoming().flatten() {
        let name = name.clone();
        std::thread::spawn(move || serve(s, &name, silent));
    }
}
