//! A connection's bytes: plain TCP, or TLS over TCP, split into a read half
//! and a write half that both keep the socket.
//!
//! The write half is written synchronously, by whoever has a frame to send
//! (see [`crate::outbound`]): no task sits between a caller and the socket.
//! TLS keeps that shape. Both halves share one rustls connection behind a
//! mutex: a sender encrypts its bytes and writes the records to the socket
//! under the lock; the read half feeds the records it reads to the same
//! connection and reads plaintext out. The lock is held only while bytes are
//! encrypted, decrypted or handed to the kernel, never across a wait.
//!
//! The TLS handshake itself is done with tokio-rustls before the split
//! ([`connect_tls`], [`accept_tls`]); the established rustls connection is
//! then taken out of tokio-rustls's stream.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

/// Plaintext encrypted per round before the records are written: bounds the
/// TLS bytes rustls holds for a socket that does not drain.
const ENCRYPT_BATCH: usize = 64 * 1024;

/// Bytes of TLS records read from the socket at a time: less than the
/// plaintext rustls buffers (16 KiB), so that what one read brings always
/// fits once decrypted.
const RECORDS: usize = 16 * 1024;

/// The first byte of a TLS record carrying a handshake message: how a host
/// tells a TLS client from a plaintext one (a wasmrpc frame starts with the
/// high byte of its length, which is 0 for frames under 16 MiB).
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// An established connection: TCP, or TLS over TCP.
pub struct Stream {
    tcp: Arc<TcpStream>,
    tls: Option<Arc<Mutex<rustls::Connection>>>,
}

impl Stream {
    /// A plaintext connection.
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream {
            tcp: Arc::new(tcp),
            tls: None,
        }
    }

    /// A TLS connection whose handshake is complete.
    pub fn tls(tcp: TcpStream, connection: impl Into<rustls::Connection>) -> Stream {
        let mut connection: rustls::Connection = connection.into();
        // The outbound bounds what is queued; rustls buffers only what one
        // write round encrypts (see `ENCRYPT_BATCH`).
        connection.set_buffer_limit(None);
        Stream {
            tcp: Arc::new(tcp),
            tls: Some(Arc::new(Mutex::new(connection))),
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The certificate chain the other side presented, leaf first (TLS
    /// only, and only if it presented one).
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        let tls = self.tls.as_ref()?;
        let connection = tls.lock().expect("tls lock");
        connection
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
    }

    /// The two halves; each keeps the socket open.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                tcp: self.tcp.clone(),
                records: if self.tls.is_some() {
                    vec![0; RECORDS].into_boxed_slice()
                } else {
                    Box::default()
                },
                tls: self.tls.clone(),
                eof: false,
            },
            WriteHalf {
                tcp: self.tcp,
                tls: self.tls,
            },
        )
    }
}

/// Connects TLS as a client over `tcp` and completes the handshake.
///
/// # Errors
///
/// The handshake's error: a certificate the configuration refuses, an alert
/// from the other side, a peer that does not speak TLS, or the socket's.
pub async fn connect_tls(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<Stream> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = connector.connect(name, tcp).await?;
    let (tcp, connection) = stream.into_inner();
    Ok(Stream::tls(tcp, connection))
}

/// Accepts TLS as a server over `tcp` and completes the handshake.
///
/// # Errors
///
/// As [`connect_tls`].
pub async fn accept_tls(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Stream> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let stream = acceptor.accept(tcp).await?;
    let (tcp, connection) = stream.into_inner();
    Ok(Stream::tls(tcp, connection))
}

/// The read half: plaintext out, whatever the transport.
pub struct ReadHalf {
    tcp: Arc<TcpStream>,
    tls: Option<Arc<Mutex<rustls::Connection>>>,
    /// The socket reached its end (TLS: no more records will come).
    eof: bool,
    /// TLS: records read from the socket, before rustls takes them.
    records: Box<[u8]>,
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(tls) = &this.tls else {
            loop {
                ready!(this.tcp.poll_read_ready(cx))?;
                match this.tcp.try_read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        };
        loop {
            {
                let mut connection = lock(tls);
                match connection.reader().read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The socket ended without `close_notify`. Frames carry
                    // their length, so a cut inside one is still detected;
                    // a cut between two is a closed connection.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
                if this.eof {
                    return Poll::Ready(Ok(()));
                }
            }
            // No plaintext is buffered: read records, without the lock, so
            // that a sender is never held up by this read.
            let n = match this.tcp.try_read(&mut this.records) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.tcp.poll_read_ready(cx))?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let mut connection = lock(tls);
            if n == 0 {
                // End of stream: the next read says how it ended.
                this.eof = true;
                let _ = connection.read_tls(&mut &[][..]);
                continue;
            }
            // The plaintext buffer is empty, and `RECORDS` bytes of records
            // hold less plaintext than rustls buffers: all of them fit.
            let mut fresh = &this.records[..n];
            while !fresh.is_empty() {
                connection.read_tls(&mut fresh)?;
                if let Err(error) = connection.process_new_packets() {
                    // Send the alert rustls prepared, as far as the socket
                    // takes it now.
                    let _ = write_records(&mut connection, &this.tcp);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
                }
            }
            // Answers rustls owes the other side (a key update): written now
            // if the socket takes them, else with the next frame sent.
            if connection.wants_write() {
                let _ = write_records(&mut connection, &this.tcp);
            }
        }
    }
}

/// The write half, written without waiting (see [`WriteHalf::write_now`]).
pub struct WriteHalf {
    tcp: Arc<TcpStream>,
    tls: Option<Arc<Mutex<rustls::Connection>>>,
}

/// What one [`WriteHalf::write_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Bytes of the chunk taken: written, or encrypted and owed to the socket.
    pub bytes: usize,
    /// The socket is full: bytes wait (in the chunk, or encrypted in TLS).
    pub blocked: bool,
}

impl WriteHalf {
    /// Writes from `chunk` until it is empty or the socket would block,
    /// removing from `chunk` what it took. TLS: encrypts as it goes, and
    /// first writes any records still owed.
    ///
    /// # Errors
    ///
    /// The socket's, or TLS's.
    pub fn write_now(&self, chunk: &mut BytesMut) -> io::Result<Written> {
        let Some(tls) = &self.tls else {
            let bytes = write_plain(&self.tcp, chunk)?;
            return Ok(Written {
                bytes,
                blocked: !chunk.is_empty(),
            });
        };
        let mut connection = lock(tls);
        let mut bytes = 0;
        loop {
            if !write_records(&mut connection, &self.tcp)? {
                return Ok(Written {
                    bytes,
                    blocked: true,
                });
            }
            if chunk.is_empty() {
                return Ok(Written {
                    bytes,
                    blocked: false,
                });
            }
            let n = chunk.len().min(ENCRYPT_BATCH);
            connection.writer().write_all(&chunk[..n])?;
            chunk.advance(n);
            bytes += n;
        }
    }

    /// Whether encrypted bytes wait for the socket.
    pub fn owes(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| lock(tls).wants_write())
    }

    /// Resolves when the socket may take more bytes.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Ends the write direction: TLS's `close_notify` (as far as the socket
    /// takes it now), then the socket's FIN.
    pub fn shutdown(&self) {
        if let Some(tls) = &self.tls {
            let mut connection = lock(tls);
            connection.send_close_notify();
            let _ = write_records(&mut connection, &self.tcp);
        }
        // SAFETY: shutdown(2) on a descriptor this socket owns; it only ends
        // the write direction (the peer sees end of stream).
        unsafe {
            libc::shutdown(self.tcp.as_raw_fd(), libc::SHUT_WR);
        }
    }
}

fn lock(tls: &Mutex<rustls::Connection>) -> MutexGuard<'_, rustls::Connection> {
    tls.lock().expect("tls lock")
}

/// Writes the TLS records rustls holds; false when the socket would block
/// first.
fn write_records(connection: &mut rustls::Connection, tcp: &TcpStream) -> io::Result<bool> {
    let mut socket = Socket(tcp);
    while connection.wants_write() {
        match connection.write_tls(&mut socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes from `chunk` until it is empty or the socket would block; returns
/// the bytes written and leaves the rest in `chunk`.
fn write_plain(tcp: &TcpStream, chunk: &mut BytesMut) -> io::Result<usize> {
    let mut written = 0;
    while !chunk.is_empty() {
        match tcp.try_write(chunk) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                chunk.advance(n);
                written += n;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

/// The socket as a [`Write`] that never waits: `WouldBlock` when full.
struct Socket<'a>(&'a TcpStream);

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
