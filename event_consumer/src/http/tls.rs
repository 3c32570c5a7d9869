//! TLS on one connection: a rustls server session over the blocking socket, owned by the
//! connection's [`Writer`](super::Writer) and used by the connection's thread only.
//!
//! Reading: ciphertext is read from the socket (with the connection's deadlines) and fed to the
//! session; what the session wants to send meanwhile (handshake messages, alerts) is written at
//! once. Writing: an answer is encrypted into the session and its ciphertext written, blocking
//! up to the socket's send timeout (the connection's write timeout, set once).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

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

/// One connection's TLS session; see the module docs.
#[derive(Debug)]
pub struct Tls {
    tcp: Arc<TcpStream>,
    connection: ServerConnection,
    /// Whether any byte arrived yet (the plain-HTTP check looks at the first one).
    started: bool,
}

impl Tls {
    pub fn new(tcp: Arc<TcpStream>, config: Arc<ServerConfig>) -> Result<Tls, rustls::Error> {
        Ok(Tls {
            tcp,
            connection: ServerConnection::new(config)?,
            started: false,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.connection.is_handshaking()
    }

    /// Reads plaintext into `dst`; 0 is the end of the stream (the client closed, with or
    /// without `close_notify`: HTTP frames its messages itself, so a cut is seen there).
    /// `read_raw` reads ciphertext from the socket (with the connection's deadlines).
    // Not inlined: its ciphertext buffer lives on the stack, and a plain connection's
    // read path must not carry it (every stack page a connection touches stays resident).
    #[inline(never)]
    pub fn read<E>(
        &mut self,
        dst: &mut [u8],
        mut read_raw: impl FnMut(&TcpStream, &mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, TlsReadError<E>> {
        let mut raw = [0u8; RAW_CHUNK_BYTES];
        loop {
            match self.connection.reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The client closed without close_notify: an end like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(TlsReadError::Write(e)),
            }
            let n = read_raw(&self.tcp, &mut raw).map_err(TlsReadError::Raw)?;
            if n == 0 {
                return Ok(0);
            }
            if !self.started {
                self.started = true;
                if raw[0] != HANDSHAKE_RECORD {
                    if raw[0].is_ascii_alphabetic() {
                        return Err(TlsReadError::PlainHttp);
                    }
                    return Err(TlsReadError::Protocol(rustls::Error::General(
                        "the first bytes are not a TLS handshake".into(),
                    )));
                }
            }
            if let Err(error) = feed(&mut self.connection, &raw[..n]) {
                // Send the alert that says why, if the socket takes it.
                let _ = self.write_pending();
                return Err(TlsReadError::Protocol(error));
            }
            self.write_pending().map_err(TlsReadError::Write)?;
        }
    }

    /// Encrypts `plain` into the session's outgoing buffer (nothing is written yet).
    pub fn encrypt(&mut self, plain: &[u8]) -> io::Result<()> {
        self.connection.writer().write_all(plain)
    }

    /// Writes waiting ciphertext until none is left; a send timeout that passes is an error.
    pub fn write_pending(&mut self) -> io::Result<()> {
        while self.connection.wants_write() {
            match self.connection.write_tls(&mut &*self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Linux reports an expired send timeout as WouldBlock, others as TimedOut.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queues `close_notify` (written by the next [`Tls::write_pending`]).
    pub fn close_notify(&mut self) {
        self.connection.send_close_notify();
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
