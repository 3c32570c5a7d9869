//! TLS on one connection: a rustls server session shared by the connection's reading half and
//! its [`Writer`](super::Writer), over the blocking socket.
//!
//! The reading half reads ciphertext from the socket without holding the session (a read may
//! block for the whole idle timeout), then takes the session to decrypt it. The writer takes
//! the session (inside its own lock) to encrypt an answer and to write ciphertext. Lock order is
//! always writer state, then session; the reading half never waits for the writer while it
//! holds the session, so the two halves cannot deadlock. Handshake messages the session wants
//! to send are written by the writer too (see [`Tls::read`]), so every byte sent goes through
//! one place with one send timeout policy.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use common::sync::lock;

use rustls::{ServerConfig, ServerConnection};

/// Ciphertext read per socket read, on the connection thread's stack.
const RAW_CHUNK_BYTES: usize = 4 * 1024;

/// The first byte of a TLS record that starts a handshake.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Why a TLS read gave no plaintext; `E` is what the raw socket read fails with.
#[derive(Debug)]
pub enum TlsReadError<E> {
    /// The first bytes are plain HTTP (a method's letters), not a TLS handshake.
    PlainHttp,
    /// The handshake or a record failed (no client certificate, an unknown CA, a bad record);
    /// the alert, if any, has been sent.
    Protocol(rustls::Error),
    /// The socket read failed or its deadline passed (as the raw read reported it).
    Raw(E),
    /// Writing what the session had to send (handshake messages) failed.
    Write(io::Error),
}

#[derive(Debug)]
struct Session {
    connection: ServerConnection,
    /// Whether any byte arrived yet (the plain-HTTP check looks at the first one).
    started: bool,
}

/// One connection's TLS session; see the module docs.
#[derive(Debug)]
pub struct Tls {
    tcp: Arc<TcpStream>,
    session: Mutex<Session>,
}

impl Tls {
    pub fn new(tcp: Arc<TcpStream>, config: Arc<ServerConfig>) -> Result<Tls, rustls::Error> {
        Ok(Tls {
            tcp,
            session: Mutex::new(Session {
                connection: ServerConnection::new(config)?,
                started: false,
            }),
        })
    }

    pub fn is_handshaking(&self) -> bool {
        lock(&self.session).connection.is_handshaking()
    }

    /// Reads plaintext into `dst`; 0 is the end of the stream (the client closed, with or
    /// without `close_notify`: HTTP frames its messages itself, so a cut is seen there).
    ///
    /// `read_raw` reads ciphertext from the socket (with the connection's deadlines);
    /// `flush` writes what the session wants to send (handshake messages, alerts) through the
    /// connection's writer, which must not be called with the session held.
    // Not inlined: its ciphertext buffer lives on the stack, and a plain connection's
    // read path must not carry it (every stack page a connection touches stays resident).
    #[inline(never)]
    pub fn read<E>(
        &self,
        dst: &mut [u8],
        mut read_raw: impl FnMut(&TcpStream, &mut [u8]) -> Result<usize, E>,
        mut flush: impl FnMut() -> io::Result<()>,
    ) -> Result<usize, TlsReadError<E>> {
        let mut raw = [0u8; RAW_CHUNK_BYTES];
        loop {
            {
                let mut session = lock(&self.session);
                match session.connection.reader().read(dst) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The client closed without close_notify: an end like any other.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(TlsReadError::Write(e)),
                }
            }
            let n = read_raw(&self.tcp, &mut raw).map_err(TlsReadError::Raw)?;
            if n == 0 {
                return Ok(0);
            }
            let wants_write = {
                let mut session = lock(&self.session);
                if !session.started {
                    session.started = true;
                    if raw[0] != HANDSHAKE_RECORD {
                        if raw[0].is_ascii_alphabetic() {
                            return Err(TlsReadError::PlainHttp);
                        }
                        return Err(TlsReadError::Protocol(rustls::Error::General(
                            "the first bytes are not a TLS handshake".into(),
                        )));
                    }
                }
                let fed = feed(&mut session.connection, &raw[..n]);
                let wants_write = session.connection.wants_write();
                if let Err(error) = fed {
                    drop(session);
                    // Send the alert that says why, if the socket takes it.
                    if wants_write {
                        let _ = flush();
                    }
                    return Err(TlsReadError::Protocol(error));
                }
                wants_write
            };
            if wants_write {
                flush().map_err(TlsReadError::Write)?;
            }
        }
    }

    /// Encrypts `plain` into the session's outgoing buffer (nothing is written yet).
    pub fn encrypt(&self, plain: &[u8]) -> io::Result<()> {
        lock(&self.session).connection.writer().write_all(plain)
    }

    /// Whether ciphertext waits to be written.
    pub fn wants_write(&self) -> bool {
        lock(&self.session).connection.wants_write()
    }

    /// Writes waiting ciphertext until none is left (`Ok(true)`) or the socket's send timeout
    /// passes (`Ok(false)`: the rest stays in the session for the next call).
    pub fn write_pending(&self) -> io::Result<bool> {
        let mut session = lock(&self.session);
        while session.connection.wants_write() {
            match session.connection.write_tls(&mut &*self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Queues `close_notify` (written by the next [`Tls::write_pending`]).
    pub fn close_notify(&self) {
        lock(&self.session).connection.send_close_notify();
    }

    /// The raw socket, for what is sent outside TLS (the answer to plain HTTP).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

/// Gives the session all of `ciphertext` and processes it.
fn feed(connection: &mut ServerConnection, mut ciphertext: &[u8]) -> Result<(), rustls::Error> {
    while !ciphertext.is_empty() {
        match connection.read_tls(&mut ciphertext) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(rustls::Error::General(e.to_string())),
        }
        connection.process_new_packets()?;
    }
    Ok(())
}
